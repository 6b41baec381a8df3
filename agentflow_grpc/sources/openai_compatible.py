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
from agentflow_grpc.model.failures import NodeFailure, for_http_status
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import (
    ChatCallMetrics,
    ChatRequest,
    ChatResult,
    ImageRequest,
    ImageResult,
    ProviderLimits,
)
from agentflow_grpc.sources.chat_wire import BEARER, ChunkStream, read_chunk, read_completion
from agentflow_grpc.sources.genai_telemetry import (
    SourceChatMetrics,
    chat_attributes,
    error_type,
    image_attributes,
    image_usage_attributes,
    response_attributes,
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
    # Azure OpenAI only
    azure_endpoint: str | None = None
    api_version: str | None = None


def provider_failure(exc: openai.OpenAIError) -> NodeFailure:
    """Map an SDK error to a node failure: timeouts, 429 and 5xx are retryable."""
    if timed_out(exc):
        return NodeFailure(
            "provider.timeout", "the provider did not answer in time", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
        return NodeFailure(
            "provider.unavailable", f"cannot reach the provider: {exc}", retryable=True
        )
    if isinstance(exc, openai.APIStatusError):
        return for_http_status("provider", exc.status_code, exc.message)
    return NodeFailure("provider.error", str(exc))


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

    async def aclose(self) -> None:
        await self._client.close()

    async def check(self) -> str:
        try:
            page = await self._client.models.list()
        except openai.OpenAIError as exc:
            raise provider_failure(exc) from exc
        return f"listed {len(page.data)} model(s) at {self._client.base_url}"

    def _model(self, requested: str | None, default: str | None, what: str) -> str:
        model = requested or default
        if model is None:
            raise NodeFailure(
                "source.no_model",
                f"neither the node nor source {self.definition.name!r} names a {what} model",
            )
        return model

    async def chat(self, request: ChatRequest, on_token: Callable[[str], None]) -> ChatResult:
        model = self._model(request.model, self._config.model, "chat")
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
        await self._gate.admit()
        metrics = self._metrics.of(model)
        started = time.perf_counter()
        try:
            result = await self._traced_chat(request, arguments, on_token, metrics, started)
        except BaseException as exc:
            metrics.failed(time.perf_counter() - started, error_type(exc))
            if isinstance(exc, openai.OpenAIError):
                raise provider_failure(exc) from exc
            raise
        metrics.succeeded(time.perf_counter() - started)
        if result.usage is not None:
            metrics.used_tokens(result.usage.prompt_tokens, result.usage.completion_tokens)
        await self._gate.spent(result.usage)
        return result

    async def _traced_chat(
        self,
        request: ChatRequest,
        arguments: dict[str, Any],
        on_token: Callable[[str], None],
        metrics: ChatCallMetrics,
        started: float,
    ) -> ChatResult:
        """`_chat` in its CLIENT span, `chat {model}`."""
        model = arguments["model"]
        content = spans.content_enabled()
        attributes = chat_attributes(self._span_attributes, request, arguments, content=content)
        with spans.span(
            f"chat {model}",
            kind=spans.SpanKind.CLIENT,
            attributes=attributes,
            error_type=error_type,
        ) as span:
            result = await self._chat(request, arguments, on_token, metrics, started)
            if span.is_recording():
                span.set_attributes(response_attributes(result, content=content))
            return result

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
            finish_reason=completion.finish_reason,
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
        finish_reason: str | None = None
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
                    finish_reason = chunk.finish_reason
        return ChatResult("".join(parts), model, finish_reason, usage, self._metrics.provider)

    async def generate_images(self, request: ImageRequest) -> ImageResult:
        if not self._images:
            raise NodeFailure(
                "source.incompatible",
                f"source {self.definition.name!r} ({self.definition.type}) does not make images",
            )
        model = self._model(request.model, self._config.image_model, "image")
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
