"""What an LLM source records of its calls, as OpenTelemetry's GenAI conventions name it.

Metrics (through the `ChatMetrics` port the server gives the adapters): labelled with the
provider (`gen_ai.provider.name`: `openai`, `azure.ai.openai`, `anthropic`, `gcp.gemini`) and
the model: the source's configured `model`, or `_OTHER` for a model only a node names, so that
what specs say cannot multiply the series. Spans: the attributes of `chat {model}` and
`generate_content {model}` CLIENT spans; prompts and completions only when AGENTFLOW_TRACE_CONTENT
allows it, the API key never. Every LLM source adapter uses these, so all report alike.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import ChatCallMetrics, ChatMetrics, ChatRequest, ChatResult

OTHER_MODEL = "_OTHER"  # the model label of a call to a model its source does not configure


def timed_out(exc: BaseException) -> bool:
    """Whether a failed call timed out. The SDK's aiohttp transport reports a refused or reset
    connection as a connect *timeout* (its error map prefers `ConnectTimeout` for any
    `aiohttp.ClientConnectionError`); a timeout caused by a connection error that is not
    itself a timeout (an `OSError` other than `TimeoutError`) did not time out."""
    if not isinstance(exc, openai.APITimeoutError):
        return False
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return False
        cause = cause.__cause__
    return True


def error_type(exc: BaseException) -> str:
    """The `error_type` of a failed call: low-cardinality, as OpenTelemetry's `error.type`."""
    if timed_out(exc):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "APIConnectionError"  # as before the aiohttp transport, refused included
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, NodeFailure):
        return exc.code
    if isinstance(exc, BaseException) and not isinstance(exc, Exception):
        return "cancelled"  # the node's timeout, or the run cancelled
    return type(exc).__name__


class SourceChatMetrics:
    """A source's chat call metrics: its configured model's, bound at open; any other model's
    (`_OTHER`), bound when first called."""

    __slots__ = ("_configured", "_metrics", "_model", "_other", "_provider")

    def __init__(self, metrics: ChatMetrics, provider: str, model: str | None) -> None:
        self._metrics = metrics
        self._provider = provider
        self._model = model
        self._configured = None if model is None else metrics.chat_calls(provider, model)
        self._other: ChatCallMetrics | None = None

    @property
    def provider(self) -> str:
        """OpenTelemetry's `gen_ai.provider.name` of the source."""
        return self._provider

    def of(self, model: str) -> ChatCallMetrics:
        if model == self._model and self._configured is not None:
            return self._configured
        if self._other is None:
            self._other = self._metrics.chat_calls(self._provider, OTHER_MODEL)
        return self._other


def server_attributes(base_url: httpx2.URL, provider: str) -> dict[str, Any]:
    """The provider and the server a source's spans name (never its key or headers)."""
    url = base_url
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    attributes: dict[str, Any] = {"gen_ai.provider.name": provider, "server.address": url.host}
    if port is not None:
        attributes["server.port"] = port
    return attributes


def response_attributes(result: ChatResult, *, content: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.response.model": result.model}
    if result.finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = (result.finish_reason,)
    if result.usage is not None:
        attributes["gen_ai.usage.input_tokens"] = result.usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = result.usage.completion_tokens
        if result.usage.cache_read_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = result.usage.cache_read_tokens
        if result.usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = result.usage.cache_write_tokens
    if content:
        message: dict[str, Any] = {
            "role": "assistant",
            "parts": [{"type": "text", "content": result.text}],
        }
        if result.finish_reason is not None:
            message["finish_reason"] = result.finish_reason
        attributes["gen_ai.output.messages"] = json.dumps([message], ensure_ascii=False)
    return attributes


def input_messages(request: ChatRequest) -> str:
    """The conversation as `gen_ai.input.messages` (JSON), for AGENTFLOW_TRACE_CONTENT."""
    return json.dumps(
        [
            {"role": m.get("role", "user"), "parts": [{"type": "text", "content": m["content"]}]}
            for m in request.messages
        ],
        ensure_ascii=False,
    )


def chat_attributes(
    server: dict[str, Any], request: ChatRequest, arguments: dict[str, Any], *, content: bool
) -> dict[str, spans.AttributeValue]:
    """A `chat {model}` span's attributes at its start: the server, the request's model and
    parameters, the messages only with `content`."""
    attributes: dict[str, spans.AttributeValue] = {
        **server,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": arguments["model"],
        "gen_ai.output.type": "json"
        if request.response_format == "json" or request.output_schema is not None
        else "text",
    }
    for name in ("temperature", "top_p", "max_tokens"):
        if name in arguments:
            attributes[f"gen_ai.request.{name}"] = arguments[name]
    if content:
        attributes["gen_ai.input.messages"] = input_messages(request)
    return attributes


def image_attributes(
    server: dict[str, Any], model: str, count: int
) -> dict[str, spans.AttributeValue]:
    """A `generate_content {model}` span's attributes at its start."""
    return {
        **server,
        "gen_ai.operation.name": "generate_content",
        "gen_ai.request.model": model,
        "gen_ai.output.type": "image",
        "gen_ai.request.choice.count": count,
    }


def image_usage_attributes(usage: Any) -> dict[str, spans.AttributeValue]:
    """Token counts an image response reports (gpt-image-* do), as span attributes."""
    attributes: dict[str, spans.AttributeValue] = {}
    for kind in ("input", "output"):
        tokens = getattr(usage, f"{kind}_tokens", None)
        if isinstance(tokens, int):
            attributes[f"gen_ai.usage.{kind}_tokens"] = tokens
    return attributes
