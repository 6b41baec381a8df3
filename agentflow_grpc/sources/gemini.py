"""Chat and image models of Google's Gemini API (Google AI Studio, an API key) through Google's own
SDK, `google-genai`: the `gemini` source type (OpenTelemetry's provider name `gcp.gemini`).

The SDK does the HTTP, on aiohttp (its async transport whenever aiohttp is installed, as it is
here), one client per opened source: its connection pool serves every call and run until
`aclose()`. The SDK's own retries are off (`HttpRetryOptions(attempts=1)`, which also stops its
unconditional second try of a refused connection), and so is its automatic continuation of a
reply the API ended with `CONTINUATION` (a request of its own): the runtime retries by the
node's policy, every attempt an event, and a call is one request, counted once by
`config.limits` (`CallGate`).

Chat: system messages become the `system_instruction`; user messages role `user`, assistant
messages role `model` (consecutive messages of one role are one turn of several parts);
`temperature`, `top_p`, `max_tokens` (`max_output_tokens`); JSON output is
`response_mime_type: application/json`, with the node's `output_schema` as
`response_json_schema` (JSON Schema as written; `response_schema` would take Google's OpenAPI
subset). Streamed with `streamGenerateContent?alt=sse`, or one `generateContent`. Finish reasons
map through `FINISH_REASONS`; a prompt the API refused (`prompt_feedback.block_reason`, no
candidates) or a filtered reply with no text is `provider.content_blocked`. Usage: the prompt
tokens are `prompt_token_count` (cached ones included) plus `tool_use_prompt_token_count`; the
completion tokens `candidates_token_count` plus `thoughts_token_count` (thinking is billed as
output, as OpenAI counts reasoning tokens within `completion_tokens`); the cache reads
`cached_content_token_count`. Gemini reports no cache writes (an explicit cache is made by its
own call, implicit caching costs nothing to write): `cache_write_tokens` stays 0.

Images: a Gemini image model (`gemini-2.5-flash-image`, …) through `generate_content` with
`response_modalities: [IMAGE]`, not Imagen's `:predict` (`generate_images`, deprecated in the SDK
in favour of this). One request per image (`n` at once). The node's `size` becomes the nearest
`aspect_ratio` and, above 1024 px, an `image_size` of `2K` or `4K` (which only some models
take); `quality` has no Gemini equivalent and is not sent. Gemini returns the image's bytes,
never a URL: `b64_json` is them; a `url` asked for is a `data:` URL (RFC 2397) of them, which
a browser or a Markdown or HTML document shows as it would a link; each image also names its
`mime_type`.

Failures as `openai_compatible.provider_failure` maps them: 429 `provider.rate_limited` after
the `Retry-After` header or, as the Gemini API gives it, the error's `google.rpc.RetryInfo`
`retryDelay`; 400 "The input token count (N) exceeds the maximum number of tokens allowed (M)."
`provider.context_too_long`; a 400 `API_KEY_INVALID` (Google's answer to a bad key)
`provider.unauthenticated`, as 401 and 403 are.

Each chat call is recorded like the OpenAI-compatible ones (`genai_telemetry.py`): the client
metrics and a CLIENT span `chat {model}` (`generate_content {model}` for images).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import math
import os
import re
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import aiohttp
import certifi
import httpx2
from google import genai
from google.genai import errors, types
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.failures import (
    NodeFailure,
    content_blocked,
    context_too_long,
    for_http_status,
    retry_after_seconds,
)
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import (
    ChatCallMetrics,
    ChatMetrics,
    ChatRequest,
    ChatResult,
    FinishReason,
    ImageRequest,
    ImageResult,
    ProviderLimiter,
    ProviderLimits,
    chosen_model,
    finish_reason,
    parse_config,
)
from agentflow_grpc.sources.chat_calls import ChatCalls
from agentflow_grpc.sources.genai_telemetry import (
    SourceChatMetrics,
    image_attributes,
    server_attributes,
)
from agentflow_grpc.sources.rate_limits import CallGate

PROVIDER = "gcp.gemini"  # OpenTelemetry's gen_ai.provider.name for the Gemini API
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_KEY_HEADER = "x-goog-api-key"

# Gemini's finish reasons (google.genai.types.FinishReason) in the shared vocabulary; any other
# is `other` (MALFORMED_FUNCTION_CALL, LANGUAGE, NO_IMAGE, OTHER, …). CONTINUATION: the reply
# reached the per-request token limit before its end (the SDK's automatic continuation is off).
FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "CONTINUATION": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "ESCALATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
# The Gemini API's 400 for a prompt longer than the model takes: "The input token count
# (1200293) exceeds the maximum number of tokens allowed (1048576)."
_CONTEXT_TOO_LONG = re.compile(r"exceeds the maximum number of tokens allowed", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")  # a protobuf Duration in JSON: "52.3s"
# The aspect ratios Gemini's image models take, by width / height.
ASPECT_RATIOS: dict[str, float] = {
    ratio: int(w) / int(h)
    for ratio in ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
    for w, h in [ratio.split(":")]
}
_NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
_T = TypeVar("_T")


class GeminiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        DEFAULT_BASE_URL,
        description="API root, without the version: https://generativelanguage.googleapis.com "
        "(or a proxy's).",
    )
    api_version: str = Field(
        "v1beta", pattern=r"^v[0-9]+(alpha|beta)?[0-9]*$", description="The API's version."
    )
    model: str | None = Field(None, description="Model used when a node names none.")
    image_model: str | None = Field(None, description="Image model used when a node names none.")
    timeout: float = Field(
        600.0, gt=0, description="Seconds per HTTP request, a streamed reply's included."
    )
    default_headers: dict[str, str] = Field(default_factory=dict)
    limits: ProviderLimits | None = Field(
        None, description="Calls and tokens a minute, for every run and server together."
    )

    @field_validator("base_url")
    @classmethod
    def _api_root(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        path = parts.path.rstrip("/")
        if path.endswith("/openai") or re.search(r"/v[0-9]+(alpha|beta)?[0-9]*$", path):
            raise ValueError(
                "give the API root (e.g. https://generativelanguage.googleapis.com), without "
                "the version (config.api_version) nor the OpenAI-compatible /openai path"
            )
        return value

    @field_validator("default_headers")
    @classmethod
    def _no_key_header(cls, value: dict[str, str]) -> dict[str, str]:
        if any(name.lower() == API_KEY_HEADER for name in value):
            raise ValueError(f"{API_KEY_HEADER} is the secret `api_key`, not a default header")
        return value


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """The context the SDK would make for aiohttp, made once: the SDK otherwise builds four per
    client (~65 ms an open)."""
    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | httpx2.TimeoutException)


def _unreachable(exc: BaseException) -> bool:
    """The connection failed, broke or was refused (aiohttp's transport, or httpx2's)."""
    return isinstance(exc, aiohttp.ClientError | httpx2.TransportError | ConnectionError)


def error_type(exc: BaseException) -> str:
    """The `error_type` of a failed call: low-cardinality, as OpenTelemetry's `error.type`."""
    if _timed_out(exc):
        return "timeout"
    if isinstance(exc, errors.APIError):
        return str(exc.code)
    if isinstance(exc, NodeFailure):
        return exc.code
    if isinstance(exc, BaseException) and not isinstance(exc, Exception):
        return "cancelled"  # the node's timeout, or the run cancelled
    return type(exc).__name__  # ClientConnectorError, ServerDisconnectedError, …


def _details(exc: errors.APIError) -> list[dict[str, Any]]:
    """The error's `details` (google.rpc messages), as the body gave them."""
    body = exc.details
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def retry_delay(exc: errors.APIError) -> float | None:
    """How long the provider asked to wait: the `Retry-After` header, else the
    `google.rpc.RetryInfo` detail's `retryDelay` (where the Gemini API says it)."""
    headers = getattr(exc.response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    if (seconds := retry_after_seconds(value)) is not None:
        return seconds
    for detail in _details(exc):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match and math.isfinite(seconds := float(match.group(1))):
                return seconds
    return None


def provider_failure(exc: BaseException) -> NodeFailure | None:
    """The node failure an SDK or transport error is; None for anything else (cancellation,
    failures of our own)."""
    if _timed_out(exc):
        return NodeFailure(
            "provider.timeout", "the provider did not answer in time", retryable=True
        )
    if isinstance(exc, errors.APIError):
        detail = f"{exc.status}: {exc.message}" if exc.status else str(exc.message)
        if exc.code == 400 and _CONTEXT_TOO_LONG.search(exc.message or ""):
            return context_too_long(str(exc.message))
        if exc.code == 400 and any(d.get("reason") == "API_KEY_INVALID" for d in _details(exc)):
            return NodeFailure("provider.unauthenticated", f"HTTP 400: {detail}")
        return for_http_status("provider", exc.code, detail, retry_after=retry_delay(exc))
    if _unreachable(exc):
        return NodeFailure(
            "provider.unavailable", f"cannot reach the provider: {exc}", retryable=True
        )
    if isinstance(exc, errors.UnknownApiResponseError):
        return NodeFailure("provider.error", f"the provider's reply could not be read: {exc}")
    return None


def read_usage(usage: types.GenerateContentResponseUsageMetadata | None) -> TokenUsage | None:
    """Gemini's usage metadata as TokenUsage (see the module doc for what counts where)."""
    if usage is None:
        return None
    prompt = (usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0)
    completion = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    cached = min(usage.cached_content_token_count or 0, prompt)
    return TokenUsage(prompt, completion, prompt + completion, cache_read_tokens=cached)


def contents_of(
    messages: Sequence[dict[str, str]],
) -> tuple[list[types.Content], types.Content | None]:
    """The conversation as Gemini's `contents` (turns of role `user` or `model`), and its
    system messages as one `system_instruction` (None without any)."""
    system: list[types.Part] = []
    turns: list[tuple[str, list[types.Part]]] = []
    for message in messages:
        role = message.get("role", "user")
        part = types.Part(text=message.get("content", ""))
        if role in ("system", "developer"):
            system.append(part)
            continue
        role = "model" if role in ("assistant", "model") else "user"
        if turns and turns[-1][0] == role:
            turns[-1][1].append(part)
        else:
            turns.append((role, [part]))
    contents = [types.Content(role=role, parts=parts) for role, parts in turns]
    return contents, types.Content(role="user", parts=system) if system else None


def image_config(size: str) -> types.ImageConfig:
    """An OpenAI-style `WIDTHxHEIGHT` as Gemini's aspect ratio and size class."""
    width, height = (int(side) for side in size.lower().split("x"))
    wanted = math.log(width / height)
    ratio = min(ASPECT_RATIOS, key=lambda name: abs(math.log(ASPECT_RATIOS[name]) - wanted))
    longest = max(width, height)
    image_size = None if longest <= 1024 else "2K" if longest <= 2048 else "4K"
    return types.ImageConfig(aspect_ratio=ratio, image_size=image_size)


def _text_of(candidate: types.Candidate) -> str:
    """A candidate's answer: its text parts, thoughts left out."""
    parts = candidate.content.parts if candidate.content is not None else None
    return "".join(p.text for p in parts or () if p.text and not p.thought)


class _Reply:
    """A reply read from one response or a stream of them."""

    __slots__ = ("blocked", "candidates", "finished", "model", "texts", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.texts: list[str] = []
        self.finished: str | None = None
        self.usage: types.GenerateContentResponseUsageMetadata | None = None
        self.blocked: str | None = None
        self.candidates = False

    def add(self, response: types.GenerateContentResponse) -> str:
        """Read one response (or streamed chunk); the text it adds."""
        self.model = response.model_version or self.model
        if response.usage_metadata is not None:
            self.usage = response.usage_metadata
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            self.blocked = str(feedback.block_reason.value)
        if not response.candidates:
            return ""
        self.candidates = True
        candidate = response.candidates[0]
        if candidate.finish_reason is not None:
            self.finished = str(candidate.finish_reason.value)
        text = _text_of(candidate)
        if text:
            self.texts.append(text)
        return text

    @property
    def refused(self) -> bool:
        """The API refused the prompt (`prompt_feedback.block_reason`, no candidates)."""
        return self.blocked is not None and not self.candidates

    def result(self, provider: str) -> ChatResult:
        """The chat result; a blocked prompt or a reply without candidates fails."""
        if self.refused:
            raise content_blocked(f"{self.model} refused the prompt ({self.blocked})")
        if not self.candidates:
            raise NodeFailure("provider.empty_reply", "the provider returned no candidates")
        return ChatResult(
            "".join(self.texts),
            self.model,
            finish_reason(self.finished, FINISH_REASONS),
            read_usage(self.usage),
            provider,
        )


class GeminiSource:
    """A `gemini` source. Its SDK client and the aiohttp session under it are made on first use
    (in the event loop that then serves every call) and closed by `aclose()`."""

    def __init__(
        self,
        definition: SourceDefinition,
        config: GeminiConfig,
        api_key: SecretStr,
        *,
        gate: CallGate,
        metrics: SourceChatMetrics,
    ) -> None:
        self.definition = definition
        self._config = config
        self._api_key = api_key
        self._gate = gate
        self._metrics = metrics
        self._client: genai.Client | None = None
        self._session: aiohttp.ClientSession | None = None
        self._span_attributes = server_attributes(httpx2.URL(config.base_url), metrics.provider)
        self._calls = ChatCalls(gate, metrics, self._span_attributes, error_type, provider_failure)

    def _sdk(self) -> genai.Client:
        """The SDK's client, on an aiohttp session of ours: left to itself the SDK makes one
        per event loop from a subclass of `aiohttp.ClientSession` it defines each time, which
        aiohttp deprecates."""
        if self._client is None:
            context = _ssl_context()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # as the SDK's: no cap on connections
                trust_env=True,
                read_bufsize=2**22,  # an image's base64 comes in one line
            )
            options = types.HttpOptions(
                base_url=self._config.base_url,
                api_version=self._config.api_version,
                timeout=max(1, round(self._config.timeout * 1000)),  # milliseconds
                headers=self._config.default_headers or None,
                retry_options=types.HttpRetryOptions(attempts=1),  # one try, no retry
                client_args={"verify": context},
                async_client_args={"ssl": context, "verify": context},
                aiohttp_client=self._session,
            )
            # vertexai=False: the Gemini API whatever GOOGLE_GENAI_USE_VERTEXAI says.
            self._client = genai.Client(
                vertexai=False, api_key=self._api_key.get_secret_value(), http_options=options
            )
        return self._client

    async def aclose(self) -> None:
        client, session = self._client, self._session
        self._client = self._session = None
        try:
            if session is not None:
                await session.close()  # the connections
        finally:
            if client is not None:
                await client.aio.aclose()  # the SDK's own httpx2 pools, never used here
                client.close()

    async def check(self) -> str:
        try:
            pager = await self._sdk().aio.models.list(config=types.ListModelsConfig(page_size=100))
        except Exception as exc:
            if (failure := provider_failure(exc)) is not None:
                raise failure from exc
            raise
        return f"listed {len(pager.page)} model(s) at {self._config.base_url}"

    async def chat(self, request: ChatRequest, on_token: Callable[[str], None]) -> ChatResult:
        model = chosen_model(self.definition, request.model, self._config.model, "chat")
        contents, system = contents_of(request.messages)
        json_output = request.output_schema is not None or request.response_format == "json"
        config = types.GenerateContentConfig(
            system_instruction=system,
            temperature=request.temperature,
            top_p=request.top_p,
            max_output_tokens=request.max_tokens,
            response_mime_type="application/json" if json_output else None,
            response_json_schema=request.output_schema,
            automatic_function_calling=_NO_AFC,
            automatic_continuation=False,
        )
        # What the span records of the request, in OpenAI's words (genai_telemetry).
        arguments: dict[str, Any] = {"model": model}
        for name in ("temperature", "top_p", "max_tokens"):
            if (value := getattr(request, name)) is not None:
                arguments[name] = value
        if json_output:
            arguments["response_format"] = "json"
        return await self._calls.run(
            request,
            arguments,
            lambda metrics, started: self._chat(
                request, model, contents, config, on_token, metrics, started
            ),
        )

    async def _chat(
        self,
        request: ChatRequest,
        model: str,
        contents: list[types.Content],
        config: types.GenerateContentConfig,
        on_token: Callable[[str], None],
        metrics: ChatCallMetrics,
        started: float,
    ) -> ChatResult:
        reply = _Reply(model)
        if request.stream:
            first = True
            stream = await self._sdk().aio.models.generate_content_stream(
                model=model, contents=contents, config=config
            )
            # Closed however the loop ends: a cancelled call's HTTP response is released (its
            # connection closed mid-body) rather than left to the garbage collector.
            async with contextlib.aclosing(
                cast(AsyncGenerator[types.GenerateContentResponse, None], stream)
            ):
                async for chunk in stream:
                    if first:
                        metrics.first_chunk(time.perf_counter() - started)
                        first = False
                    if text := reply.add(chunk):
                        on_token(text)
        else:
            reply.add(
                await self._sdk().aio.models.generate_content(
                    model=model, contents=contents, config=config
                )
            )
        if reply.refused:  # no result to count its tokens by: count them here
            if (usage := read_usage(reply.usage)) is not None:
                metrics.used_tokens(usage.prompt_tokens, usage.completion_tokens)
            await self._gate.spent(usage)
        return reply.result(self._metrics.provider)

    async def generate_images(self, request: ImageRequest) -> ImageResult:
        model = chosen_model(self.definition, request.model, self._config.image_model, "image")
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=image_config(request.size),
            automatic_function_calling=_NO_AFC,
            automatic_continuation=False,
        )
        attributes = image_attributes(self._span_attributes, model, request.n)
        try:
            with spans.span(
                f"generate_content {model}",
                kind=spans.SpanKind.CLIENT,
                attributes=attributes,
                error_type=error_type,
            ) as span:
                images = await _all(
                    [self._image(model, request.prompt, config) for _ in range(request.n)]
                )
                if span.is_recording():
                    span.set_attributes(
                        {
                            "gen_ai.response.model": images[0].model,
                            "gen_ai.usage.input_tokens": sum(i.input_tokens for i in images),
                            "gen_ai.usage.output_tokens": sum(i.output_tokens for i in images),
                        }
                    )
        except Exception as exc:
            if (failure := provider_failure(exc)) is not None:
                raise failure from exc
            raise
        return ImageResult([image.item(request.output) for image in images], images[0].model)

    async def _image(self, model: str, prompt: str, config: types.GenerateContentConfig) -> _Image:
        await self._gate.admit()
        response = await self._sdk().aio.models.generate_content(
            model=model, contents=prompt, config=config
        )
        usage = read_usage(response.usage_metadata)
        await self._gate.spent(usage)
        model = response.model_version or model
        feedback = response.prompt_feedback
        if not response.candidates and feedback is not None and feedback.block_reason is not None:
            raise content_blocked(f"{model} refused the prompt ({feedback.block_reason.value})")
        candidate = response.candidates[0] if response.candidates else None
        parts = candidate.content.parts if candidate and candidate.content else None
        blob = next(
            (p.inline_data for p in parts or () if p.inline_data and p.inline_data.data), None
        )
        if blob is None or blob.data is None:
            native = (
                candidate.finish_reason.value if candidate and candidate.finish_reason else None
            )
            reason = finish_reason(native, FINISH_REASONS)
            if reason == "content_filter":
                raise content_blocked(f"{model} made no image (finish reason {native})")
            raise NodeFailure(
                "provider.empty_reply",
                f"{model} returned no image (finish reason {native or 'none'})",
            )
        return _Image(
            base64.b64encode(blob.data).decode("ascii"),
            blob.mime_type or "image/png",
            model,
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )


@dataclass(frozen=True, slots=True)
class _Image:
    data: str  # base64
    mime_type: str
    model: str
    input_tokens: int
    output_tokens: int

    def item(self, output: str) -> dict[str, str]:
        """The image node's item: `b64_json`, or a `url` (a `data:` URL, Gemini having none)."""
        if output == "url":
            return {"url": f"data:{self.mime_type};base64,{self.data}", "mime_type": self.mime_type}
        return {"b64_json": self.data, "mime_type": self.mime_type}


async def _all(calls: list[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Every call's result, in order; the first failure cancels the others and is raised."""
    if len(calls) == 1:
        return [await calls[0]]
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass(frozen=True, slots=True)
class GeminiAdapter:
    """Opens `gemini` sources: the config and the secret checked, nothing connected yet."""

    metrics: ChatMetrics  # every chat call is recorded here
    limiter: ProviderLimiter | None = None  # counts calls against `config.limits`
    type_name: str = "gemini"
    provider_name: str = PROVIDER

    def open(self, definition: SourceDefinition) -> GeminiSource:
        config = parse_config(GeminiConfig, definition)
        api_key = definition.secrets.get("api_key")
        if api_key is None:
            raise SourceConfigError(f"source {definition.name!r} needs the secret `api_key`")
        return GeminiSource(
            definition,
            config,
            api_key,
            gate=CallGate(definition, config.limits, self.limiter),
            metrics=SourceChatMetrics(self.metrics, self.provider_name, config.model),
        )
