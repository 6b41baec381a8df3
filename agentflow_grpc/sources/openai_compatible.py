"""Chat and image models through the `openai` SDK, for every OpenAI-compatible API.

`openai` is OpenAI itself, or any compatible server given its `base_url` (vLLM, Ollama,
llama.cpp, LiteLLM). `azure_openai` uses the SDK's Azure client. `anthropic` and `gemini` use
those providers' OpenAI-compatible endpoints by default, so the same code serves them.

The SDK's own retries are off: the runtime retries by the node's policy, so that every attempt is
visible as events. A source's `config.limits` (requests and tokens a minute) hold its chat and
image calls back through the ProviderLimiter the server gives the adapter (`rate_limits.py`).

Each chat call is recorded as OpenTelemetry's GenAI conventions say (`genai_telemetry.py`): the
client metrics (duration, time to the first chunk of a stream, input and output tokens) and a
CLIENT span, `chat {model}` (`generate_content {model}` for images), with the provider, the
request's model and parameters, the response's model, finish reasons and token usage, and
`server.address`/`server.port`; a failure sets `error.type` (as the metrics' `error_type`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field

from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.failures import (
    NodeFailure,
    context_too_long,
    for_http_status,
    retry_after_seconds,
)
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import (
    ChatCallMetrics,
    ChatRequest,
    ChatResult,
    FinishReason,
    ImageRequest,
    ImageResult,
    ProviderLimits,
    chosen_model,
    finish_reason,
)
from agentflow_grpc.sources.chat_calls import ChatCalls
from agentflow_grpc.sources.chat_wire import BEARER, ChunkStream, read_chunk, read_completion
from agentflow_grpc.sources.genai_telemetry import (
    SourceChatMetrics,
    error_type,
    image_attributes,
    image_usage_attributes,
    server_attributes,
    timed_out,
)
from agentflow_grpc.sources.rate_limits import CallGate


class OpenAIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, description="API root, e.g. http://localhost:8000/v1.")
    model: str | None = Field(None, description="Model used when a node names none.")
    image_model: str | None = Field(None, description="Image model used when a node names none.")
    organization: str | None = None
    timeout: float = Field(600.0, gt=0, description="Seconds per HTTP request.")
    default_headers: dict[str, str] = Field(default_factory=dict)
    limits: ProviderLimits | None = Field(
        None, description="Calls and tokens a minute, for every run and server together."
    )


# OpenAI's finish reasons are the shared vocabulary; `function_call` is the old name of tool calls.
FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
# The `code` OpenAI (and Azure OpenAI, and compatible servers such as vLLM) give a 400 for a
# prompt longer than the model's context.
_CONTEXT_TOO_LONG_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})


def provider_failure(exc: openai.OpenAIError) -> NodeFailure:
    """Map an SDK error to a node failure: timeouts, 429 and 5xx are retryable, the latter two
    after the `Retry-After` the provider sent, if it sent one."""
    if timed_out(exc):
        return NodeFailure(
            "provider.timeout", "the provider did not answer in time", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
        return NodeFailure(
            "provider.unavailable", f"cannot reach the provider: {exc}", retryable=True
        )
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 400 and getattr(exc, "code", None) in _CONTEXT_TOO_LONG_CODES:
            return context_too_long(exc.message)
        retry_after = retry_after_seconds(exc.response.headers.get("retry-after"))
        return for_http_status("provider", exc.status_code, exc.message, retry_after=retry_after)
    return NodeFailure("provider.error", str(exc))


def _sdk_failure(exc: BaseException) -> NodeFailure | None:
    return provider_failure(exc) if isinstance(exc, openai.OpenAIError) else None


class OpenAICompatibleSource:
    def __init__(
        self,
        definition: SourceDefinition,
        config: OpenAIConfig,
        client: openai.AsyncOpenAI,
        *,
        images: bool,
        gate: CallGate,
        metrics: SourceChatMetrics,
    ) -> None:
        self.definition = definition
        self._config = config
        self._client = client
        self._images = images
        self._gate = gate
        self._metrics = metrics
        self._span_attributes = server_attributes(client.base_url, metrics.provider)
        self._calls = ChatCalls(gate, metrics, self._span_attributes, error_type, _sdk_failure)

    async def aclose(self) -> None:
        await self._client.close()

    async def check(self) -> str:
        try:
            page = await self._client.models.list()
        except openai.OpenAIError as exc:
            raise provider_failure(exc) from exc
        return f"listed {len(page.data)} model(s) at {self._client.base_url}"

    async def chat(self, request: ChatRequest, on_token: Callable[[str], None]) -> ChatResult:
        model = chosen_model(self.definition, request.model, self._config.model, "chat")
        arguments: dict[str, Any] = {"model": model, "messages": list(request.messages)}
        for name in ("temperature", "top_p", "max_tokens"):
            value = getattr(request, name)
            if value is not None:
                arguments[name] = value
        if request.output_schema is not None:
            arguments["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.output_schema},
            }
        elif request.response_format == "json":
            arguments["response_format"] = {"type": "json_object"}
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
        completion = read_completion(
            await self._client.post(
                "/chat/completions", body=arguments, cast_to=object, options=BEARER
            )
        )
        if not completion.has_choice:
            await self._gate.spent(completion.usage)
            raise NodeFailure("provider.empty_reply", "the provider returned no choices")
        return ChatResult(
            text=completion.content or "",
            model=completion.model or arguments["model"],
            finish_reason=finish_reason(completion.finish_reason, FINISH_REASONS),
            usage=completion.usage,
            provider=self._metrics.provider,
        )

    async def _chat_streaming(
        self,
        arguments: dict[str, Any],
        on_token: Callable[[str], None],
        metrics: ChatCallMetrics,
        started: float,
    ) -> ChatResult:
        parts: list[str] = []
        model = arguments["model"]
        finished: str | None = None
        usage: TokenUsage | None = None
        first = True
        stream = await self._client.post(
            "/chat/completions",
            body={**arguments, "stream": True, "stream_options": {"include_usage": True}},
            cast_to=object,
            options=BEARER,
            stream=True,
            stream_cls=ChunkStream,
        )
        async with stream:
            async for data in stream:
                if first:
                    metrics.first_chunk(time.perf_counter() - started)
                    first = False
                chunk = read_chunk(data)
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.content:
                    parts.append(chunk.content)
                    on_token(chunk.content)
                if chunk.finish_reason is not None:
                    finished = chunk.finish_reason
        return ChatResult(
            "".join(parts),
            model,
            finish_reason(finished, FINISH_REASONS),
            usage,
            self._metrics.provider,
        )

    async def generate_images(self, request: ImageRequest) -> ImageResult:
        if not self._images:
            raise NodeFailure(
                "source.incompatible",
                f"source {self.definition.name!r} ({self.definition.type}) does not make images",
            )
        model = chosen_model(self.definition, request.model, self._config.image_model, "image")
        arguments: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "n": request.n,
            "size": request.size,
            "response_format": request.output,
        }
        if request.quality is not None:
            arguments["quality"] = request.quality
        await self._gate.admit()
        attributes = image_attributes(self._span_attributes, model, request.n)
        try:
            with spans.span(
                f"generate_content {model}",
                kind=spans.SpanKind.CLIENT,
                attributes=attributes,
                error_type=error_type,
            ) as span:
                response = await self._client.images.generate(**arguments)
                usage = getattr(response, "usage", None)  # gpt-image-* report tokens
                if usage is not None and span.is_recording():
                    span.set_attributes(image_usage_attributes(usage))
        except openai.OpenAIError as exc:
            raise provider_failure(exc) from exc
        images: list[dict[str, str]] = []
        for image in response.data or []:
            # Some models answer in one format only (gpt-image-* always with b64_json): keep
            # what came rather than an empty field.
            formats = (request.output, "b64_json" if request.output == "url" else "url")
            found = next(((f, getattr(image, f)) for f in formats if getattr(image, f)), None)
            if found is None:
                raise NodeFailure(
                    "provider.empty_reply", "the provider returned an image without data"
                )
            item: dict[str, str] = {found[0]: found[1]}
            if image.revised_prompt:
                item["revised_prompt"] = image.revised_prompt
            images.append(item)
        if not images:
            raise NodeFailure("provider.empty_reply", "the provider returned no images")
        return ImageResult(images, model)
