"""One chat call of any LLM source, recorded the same way whatever the provider.

Each adapter builds its request and reads its provider's reply; `ChatCalls.run` does the rest,
once for all of them:

- the source's `config.limits`: the call waits for its `CallGate` first, and the tokens the
  provider reports are counted after it;
- the GenAI client metrics (duration, time to first chunk through the `ChatCallMetrics` handed
  to the adapter's call, tokens, `error_type` of a failure);
- the CLIENT span `chat {model}` with the request's and the reply's attributes
  (`genai_telemetry.py`);
- a reply a content filter stopped before any text fails with `provider.content_blocked`
  (`blocked_unless_text`), inside the span and after its tokens were counted (they were spent);
- an SDK exception becomes the adapter's NodeFailure (`failure`), after the metrics and the
  span saw the exception itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.base import (
    ChatCallMetrics,
    ChatRequest,
    ChatResult,
    blocked_unless_text,
)
from agentflow_grpc.sources.genai_telemetry import (
    SourceChatMetrics,
    chat_attributes,
    response_attributes,
)
from agentflow_grpc.sources.rate_limits import CallGate

# The adapter's part of a call: given the model's metrics (for `first_chunk`) and when the call
# started, the provider's whole reply.
Call = Callable[[ChatCallMetrics, float], Awaitable[ChatResult]]


@dataclass(frozen=True, slots=True)
class ChatCalls:
    gate: CallGate
    metrics: SourceChatMetrics
    server: dict[str, Any]  # `server_attributes` of the source
    error_type: Callable[[BaseException], str]  # low-cardinality, for metrics and the span
    failure: Callable[[BaseException], NodeFailure | None]  # an SDK error as a NodeFailure

    async def run(self, request: ChatRequest, arguments: dict[str, Any], call: Call) -> ChatResult:
        """`call` within the source's limits, measured, in its span. `arguments` names the
        request's `model` and parameters in OpenAI's words (the span's attributes)."""
        model = arguments["model"]
        await self.gate.admit()
        metrics = self.metrics.of(model)
        content = spans.content_enabled()
        attributes = chat_attributes(self.server, request, arguments, content=content)
        started = time.perf_counter()
        try:
            with spans.span(
                f"chat {model}",
                kind=spans.SpanKind.CLIENT,
                attributes=attributes,
                error_type=self.error_type,
            ) as span:
                result = await call(metrics, started)
                if span.is_recording():
                    span.set_attributes(response_attributes(result, content=content))
                if result.usage is not None:
                    metrics.used_tokens(result.usage.prompt_tokens, result.usage.completion_tokens)
                await self.gate.spent(result.usage)
                result = blocked_unless_text(result)
        except BaseException as exc:
            metrics.failed(time.perf_counter() - started, self.error_type(exc))
            if (failure := self.failure(exc)) is not None:
                raise failure from exc
            raise
        metrics.succeeded(time.perf_counter() - started)
        return result
