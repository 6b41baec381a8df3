"""Chat through Anthropic's own Messages API with the `anthropic` SDK: the `anthropic` type.

What a `ChatRequest` becomes (`POST /v1/messages`):

- `system` messages: the request's `system` parameter, joined by blank lines (the Messages API
  has no system role in `messages`); the others are `user` and `assistant` turns, consecutive
  turns of one role merged, a first turn that is not the user's preceded by a short one that is
  (the API wants the user first).
- `max_tokens`: the request's, else the source's `config.max_tokens` (4096 unless set): the API
  requires one. A node's `temperature` and `top_p` are not sent: the API version the SDK
  speaks (`anthropic-version: 2026-10-21`) has no sampling parameters and answers 400 to any.
- JSON: with an `output_schema`, Anthropic's structured outputs (`output_config.format`, a
  `json_schema`), the schema made strict by the SDK's own `transform_schema` (constraints the
  API does not enforce move into descriptions; the llm node still checks the reply against the
  whole schema). Plain `response_format: "json"` has no such switch (structured outputs need a
  schema), so the system prompt asks for one JSON value; no assistant prefill of `{`, which the
  newer models refuse with a 400. `config.structured_outputs: false` asks through the system
  prompt for a schema too (models without structured outputs); so does a schema the SDK
  cannot make strict.
- `config.prompt_cache` (`5m`/`1h`) asks the API to cache the prompt up to its last block (the
  top-level `cache_control`).

The reply: text deltas streamed to `on_token` in order; `stop_reason` mapped into the shared
`FinishReason` (`FINISH_REASONS`); usage with `prompt_tokens` = `input_tokens` +
`cache_read_input_tokens` + `cache_creation_input_tokens` (Anthropic counts the cached ones
apart) and those two as `cache_read_tokens` / `cache_write_tokens`. Errors, streamed `error`
events included, become the same NodeFailures as the OpenAI-compatible sources' (`provider.*`);
529 `overloaded_error` is `provider.unavailable`, retryable; "prompt is too long" is
`provider.context_too_long`. Anthropic makes no images: these sources are chat only (the
validator keeps `image` nodes off them).

One SDK client per opened source (the SDK's aiohttp transport, pooled connections), its own
retries off (the node's policy retries) and its own OpenTelemetry spans off: the call is the
`chat {model}` CLIENT span every LLM source records (`genai_telemetry.py`), with the cache
token counts as `gen_ai.usage.cache_read.input_tokens` / `…cache_creation.input_tokens`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
from anthropic.types import Message, MessageParam, Usage
from pydantic import BaseModel, ConfigDict, Field

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.failures import (
    NodeFailure,
    context_too_long,
    for_http_status,
    retry_after_seconds,
)
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.base import (
    ChatCallMetrics,
    ChatMetrics,
    ChatRequest,
    ChatResult,
    FinishReason,
    ProviderLimiter,
    ProviderLimits,
    chosen_model,
    finish_reason,
    parse_config,
)
from agentflow_grpc.sources.chat_calls import ChatCalls
from agentflow_grpc.sources.genai_telemetry import (
    SourceChatMetrics,
    server_attributes,
)
from agentflow_grpc.sources.rate_limits import CallGate

TYPE_NAME = "anthropic"
PROVIDER_NAME = "anthropic"  # OpenTelemetry's gen_ai.provider.name
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # The reply ran into the model's context window: cut short, as by max_tokens.
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}
"""Anthropic's `stop_reason` values in the shared vocabulary (any other is `other`)."""

# The HTTP status of each of Anthropic's error types: an `error` event in a stream that began
# with 200 is read as the status the same error has on its own.
STATUS_BY_ERROR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# "prompt is too long: 208310 tokens > 200000 maximum"; "input length and `max_tokens` exceed
# context limit: 197000 + 8192 > 200000, decrease input length or `max_tokens` and try again".
_CONTEXT_TOO_LONG = re.compile(r"prompt is too long|exceed context limit", re.IGNORECASE)

OPENING_TURN = "(The conversation so far follows.)"
"""The user turn put before a conversation that starts with the assistant's."""

JSON_INSTRUCTION = (
    "Reply with one JSON value and nothing else: no prose before or after it, no code fences."
)


class AnthropicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(
        None,
        description="API root, as the SDK takes it (https://api.anthropic.com); a trailing /v1 "
        "(the OpenAI-compatible endpoint's root) is dropped, the SDK adds /v1/… itself.",
    )
    model: str | None = Field(None, description="Model used when a node names none.")
    max_tokens: int = Field(
        DEFAULT_MAX_TOKENS,
        ge=1,
        le=1_000_000,
        description="Tokens a reply may have when a node gives no max_tokens (the API needs one).",
    )
    timeout: float = Field(600.0, gt=0, description="Seconds per HTTP request.")
    default_headers: dict[str, str] = Field(default_factory=dict)
    limits: ProviderLimits | None = Field(
        None, description="Calls and tokens a minute, for every run and server together."
    )
    structured_outputs: bool = Field(
        True,
        description="Send an output_schema as structured outputs (output_config.format); "
        "false: describe it in the system prompt instead, for models without them.",
    )
    prompt_cache: Literal["5m", "1h"] | None = Field(
        None,
        description="Cache each prompt for this long (the request's top-level cache_control); "
        "none: no caching asked.",
    )


def api_root(base_url: str | None) -> str:
    """The API root the SDK takes: `base_url` without a trailing `/v1` (or `/v1/`)."""
    if base_url is None:
        return DEFAULT_BASE_URL
    return base_url.rstrip("/").removesuffix("/v1")


# --- errors ---


def timed_out(exc: BaseException) -> bool:
    """Whether a failed call timed out: an APITimeoutError not caused by a refused or reset
    connection (an `OSError` that is not itself a timeout)."""
    if not isinstance(exc, anthropic.APITimeoutError):
        return False
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return False
        cause = cause.__cause__
    return True


def _status(exc: anthropic.APIStatusError) -> int:
    """The error's HTTP status; for an `error` event in a 200 stream, its type's."""
    if exc.status_code >= 400:
        return exc.status_code
    return STATUS_BY_ERROR_TYPE.get(str(exc.type), 500)


def error_type(exc: BaseException) -> str:
    """A failed call's `error_type` (metrics) and `error.type` (spans): low-cardinality."""
    if timed_out(exc):
        return "timeout"
    if isinstance(exc, anthropic.APIConnectionError):
        return "APIConnectionError"
    if isinstance(exc, anthropic.APIStatusError):
        return str(_status(exc))
    if isinstance(exc, NodeFailure):
        return exc.code
    if not isinstance(exc, Exception):
        return "cancelled"  # the node's timeout, or the run cancelled
    return type(exc).__name__


def provider_failure(exc: anthropic.AnthropicError) -> NodeFailure:
    """An SDK error as a node failure: timeouts, 429, 5xx and 529 (overloaded) retryable, with
    the `Retry-After` the response gave."""
    if timed_out(exc):
        return NodeFailure(
            "provider.timeout", "the provider did not answer in time", retryable=True
        )
    if isinstance(exc, anthropic.APIConnectionError):
        return NodeFailure(
            "provider.unavailable", f"cannot reach the provider: {exc}", retryable=True
        )
    if isinstance(exc, anthropic.APIStatusError):
        status = _status(exc)
        detail = exc.api_message or exc.message
        if status == 400 and _CONTEXT_TOO_LONG.search(detail):
            return context_too_long(detail)
        retry_after = retry_after_seconds(exc.response.headers.get("retry-after"))
        if status == 529:
            return NodeFailure(
                "provider.unavailable",
                f"HTTP 529: {detail}",
                retryable=True,
                retry_after=retry_after,
            )
        return for_http_status("provider", status, detail, retry_after=retry_after)
    return NodeFailure("provider.error", str(exc))


# --- requests ---


def conversation(
    messages: Sequence[dict[str, str]],
) -> tuple[list[str], list[MessageParam]]:
    """The system texts and the user/assistant turns of `messages`, as the Messages API takes
    them: consecutive turns of one role merged, the first the user's."""
    system: list[str] = []
    turns: list[tuple[Literal["user", "assistant"], list[str]]] = []
    for message in messages:
        role, content = message.get("role", "user"), message.get("content", "")
        if role in ("system", "developer"):
            system.append(content)
            continue
        speaker: Literal["user", "assistant"] = "assistant" if role == "assistant" else "user"
        if turns and turns[-1][0] == speaker:
            turns[-1][1].append(content)
        else:
            turns.append((speaker, [content]))
    if not turns:  # only system text: it is what the user says
        return [], [{"role": "user", "content": "\n\n".join(system)}]
    if turns[0][0] != "user":
        turns.insert(0, ("user", [OPENING_TURN]))
    params: list[MessageParam] = []
    for speaker, parts in turns:
        text = "\n\n".join(parts)
        if speaker == "user":
            params.append({"role": "user", "content": text})
        else:
            params.append({"role": "assistant", "content": text})
    return system, params


def json_instruction(schema: dict[str, Any] | None) -> str:
    """What the system prompt says when the reply must be JSON and the API is not told so."""
    if schema is None:
        return JSON_INSTRUCTION
    return f"{JSON_INSTRUCTION} It must match this JSON Schema: {json.dumps(schema)}"


# Keywords whose values are data, not schemas, and those whose values map names to schemas.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "required"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})


def one_type_each(schema: Any) -> Any:
    """`schema` with every list of types (`"type": ["string", "null"]`) as an `anyOf` of one
    type each, which the SDK's transform takes (it refuses type lists)."""
    if isinstance(schema, list):
        return [one_type_each(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: one_type_each(sub) for name, sub in value.items()}
        else:
            out[key] = value if key in _DATA_KEYWORDS else one_type_each(value)
    types = out.get("type")
    if not isinstance(types, list):
        return out
    del out["type"]
    if len(types) == 1:
        return {**out, "type": types[0]}
    notes = {key: out.pop(key) for key in ("title", "description") if key in out}
    variants = [{"type": "null"} if kind == "null" else {**out, "type": kind} for kind in types]
    return {**notes, "anyOf": variants}


def strict_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """`schema` as structured outputs take it (the SDK's transform), or None if it cannot be."""
    # `$schema` and `$id` name the schema; kept, the transform would put them in a description.
    named = {key: value for key, value in schema.items() if key not in ("$schema", "$id")}
    try:
        return anthropic.transform_schema(one_type_each(named))
    except (ValueError, TypeError, KeyError, AttributeError, AssertionError):
        return None


@dataclass(slots=True)
class _Usage:
    """Token counts as a stream reports them: `message_start`'s, overwritten by the cumulative
    counts of `message_delta`."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def update(self, usage: Any) -> None:
        for field, name in (
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
        ):
            value = getattr(usage, name, None)
            if isinstance(value, int):
                setattr(self, field, value)

    def tokens(self) -> TokenUsage:
        prompt = self.input + self.cache_read + self.cache_write
        return TokenUsage(
            prompt_tokens=prompt,
            completion_tokens=self.output,
            total_tokens=prompt + self.output,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )


def token_usage(usage: Usage) -> TokenUsage:
    """A reply's `usage` as TokenUsage: every input token in `prompt_tokens`."""
    counts = _Usage()
    counts.update(usage)
    return counts.tokens()


def message_text(message: Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# --- the source ---


def _sdk_failure(exc: BaseException) -> NodeFailure | None:
    return provider_failure(exc) if isinstance(exc, anthropic.AnthropicError) else None


class AnthropicSource:
    """A ChatModel (and Checkable) on Anthropic's Messages API; no images."""

    def __init__(
        self,
        definition: SourceDefinition,
        config: AnthropicConfig,
        client: anthropic.AsyncAnthropic,
        *,
        gate: CallGate,
        metrics: SourceChatMetrics,
    ) -> None:
        self.definition = definition
        self._config = config
        self._client = client
        self._gate = gate
        self._metrics = metrics
        self._span_attributes = server_attributes(client.base_url, metrics.provider)
        self._calls = ChatCalls(gate, metrics, self._span_attributes, error_type, _sdk_failure)

    async def aclose(self) -> None:
        await self._client.close()

    async def check(self) -> str:
        try:
            page = await self._client.models.list()
        except anthropic.AnthropicError as exc:
            raise provider_failure(exc) from exc
        return f"listed {len(page.data)} model(s) at {self._client.base_url}"

    def arguments(self, request: ChatRequest) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for `request` (without `stream`)."""
        model = chosen_model(self.definition, request.model, self._config.model, "chat")
        system, turns = conversation(request.messages)
        arguments: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens or self._config.max_tokens,
            "messages": turns,
        }
        # No temperature or top_p: API version 2026-10-21 (the SDK's) refuses sampling
        # parameters with a 400, even at their defaults, and the SDK no longer takes them.
        wants_json = request.response_format == "json" or request.output_schema is not None
        schema = request.output_schema
        strict = None
        if schema is not None and self._config.structured_outputs:
            strict = strict_schema(schema)
        if strict is not None:
            arguments["output_config"] = {"format": {"type": "json_schema", "schema": strict}}
        elif wants_json:
            system.append(json_instruction(schema))
        if system:
            arguments["system"] = "\n\n".join(system)
        if self._config.prompt_cache is not None:
            arguments["cache_control"] = {"type": "ephemeral", "ttl": self._config.prompt_cache}
        return arguments

    async def chat(self, request: ChatRequest, on_token: Callable[[str], None]) -> ChatResult:
        arguments = self.arguments(request)
        return await self._calls.run(
            request,
            arguments,
            lambda metrics, started: self._chat(request, arguments, on_token, metrics, started),
        )

    async def _chat(
        self,
        request: ChatRequest,
        arguments: dict[str, Any],
        on_token: Callable[[str], None],
        metrics: ChatCallMetrics,
        started: float,
    ) -> ChatResult:
        if request.stream:
            return await self._chat_streaming(arguments, on_token, metrics, started)
        message = await self._client.messages.create(**arguments)
        return ChatResult(
            message_text(message),
            message.model or arguments["model"],
            finish_reason(message.stop_reason, FINISH_REASONS),
            token_usage(message.usage),
            self._metrics.provider,
        )

    async def _chat_streaming(
        self,
        arguments: dict[str, Any],
        on_token: Callable[[str], None],
        metrics: ChatCallMetrics,
        started: float,
    ) -> ChatResult:
        parts: list[str] = []
        model: str = arguments["model"]
        stop_reason: str | None = None
        usage = _Usage()
        seen_usage = False
        first = True
        stream = await self._client.messages.create(**arguments, stream=True)
        async with stream:  # closes the response if the call is cancelled mid-stream
            async for event in stream:
                if first:
                    metrics.first_chunk(time.perf_counter() - started)
                    first = False
                if event.type == "content_block_delta":
                    if event.delta.type == "text_delta" and event.delta.text:
                        parts.append(event.delta.text)
                        on_token(event.delta.text)
                elif event.type == "message_start":
                    model = event.message.model or model
                    usage.update(event.message.usage)
                    seen_usage = True
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    usage.update(event.usage)
                    seen_usage = True
        return ChatResult(
            "".join(parts),
            model,
            finish_reason(stop_reason, FINISH_REASONS),
            usage.tokens() if seen_usage else None,
            self._metrics.provider,
        )


@dataclass(frozen=True, slots=True)
class AnthropicAdapter:
    """Opens `anthropic` sources: config checked, the SDK's client built."""

    metrics: ChatMetrics  # every chat call is recorded here
    limiter: ProviderLimiter | None = None  # counts calls against `config.limits`
    type_name: str = TYPE_NAME
    provider_name: str = PROVIDER_NAME

    def open(self, definition: SourceDefinition) -> AnthropicSource:
        config = parse_config(AnthropicConfig, definition)
        api_key = definition.secrets.get("api_key")
        if api_key is None:
            raise SourceConfigError(f"source {definition.name!r} needs the secret `api_key`")
        client = anthropic.AsyncAnthropic(
            api_key=api_key.get_secret_value(),
            base_url=api_root(config.base_url),
            timeout=config.timeout,
            max_retries=0,
            default_headers=config.default_headers or None,
            # Our `chat {model}` span is the call's; the SDK's own would say it twice.
            open_telemetry=False,
            # aiohttp parses HTTP in C (as for the openai sources). One client per opened
            # source, shared by every run of the tenant (services/shared_sources.py).
            http_client=anthropic.DefaultAioHttpClient(),
        )
        return AnthropicSource(
            definition,
            config,
            client,
            gate=CallGate(definition, config.limits, self.limiter),
            metrics=SourceChatMetrics(self.metrics, self.provider_name, config.model),
        )
