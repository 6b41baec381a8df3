"""A run's per-node trace, folded from its stored events.

One `NodeTrace` per node that started, in the order nodes first started; each lists its attempts
in order (a node in a loop starts again at attempt 1 on each pass). An attempt that started and
never ended is `interrupted` once the run is over, `running` while it goes on. An attempt that
called providers has their time (`provider_ms`, `provider_first_token_ms`: the run profile's
parts, services/run_profiles.py) and the model that answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentflow_grpc.model.events import EventType, ExecutionEvent, TokenUsage


@dataclass(slots=True)
class NodeAttempt:
    attempt: int
    status: str  # running, completed, failed, interrupted
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    output: Any = None
    error: dict[str, Any] | None = None  # {"code", "message"} of a failed attempt
    will_retry: bool = False
    usage: TokenUsage | None = None
    streamed_text: str = ""  # the tokens the attempt streamed, joined
    provider_ms: float | None = None  # its provider calls' time, summed (None: it made none)
    provider_first_token_ms: float | None = None  # a streamed model call's time to first token
    model: dict[str, str] | None = None  # {"provider", "name"} of the model that answered
    first_sequence: int = 0
    last_sequence: int = 0


@dataclass(slots=True)
class NodeTrace:
    node_id: str
    node_type: str
    attempts: list[NodeAttempt] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.attempts[-1].status

    @property
    def usage(self) -> TokenUsage:
        total = TokenUsage()
        for attempt in self.attempts:
            if attempt.usage is not None:
                total = total + attempt.usage
        return total


def build_trace(events: Iterable[ExecutionEvent]) -> list[NodeTrace]:
    nodes: dict[str, NodeTrace] = {}
    open_attempts: dict[str, NodeAttempt] = {}
    finished = False
    for event in events:
        if event.is_terminal:
            finished = True
        node_id = event.node_id
        if node_id is None:
            continue
        if event.type is EventType.NODE_STARTED:
            trace = nodes.setdefault(node_id, NodeTrace(node_id, event.data.get("node_type", "")))
            attempt = NodeAttempt(
                attempt=event.attempt or 1,
                status="running",
                started_at=event.timestamp,
                first_sequence=event.sequence,
                last_sequence=event.sequence,
            )
            trace.attempts.append(attempt)
            open_attempts[node_id] = attempt
            continue
        current = open_attempts.get(node_id)
        if current is None:
            continue  # an event of a node that never started: not produced by the engine
        current.last_sequence = event.sequence
        if event.type is EventType.NODE_TOKEN:
            current.streamed_text += event.data.get("text", "")
        elif event.type is EventType.NODE_COMPLETED:
            _end(current, event, "completed")
            current.output = event.data.get("output")
            if "usage" in event.data:
                current.usage = TokenUsage.from_dict(event.data["usage"])
            del open_attempts[node_id]
        elif event.type is EventType.NODE_FAILED:
            _end(current, event, "failed")
            current.error = {"code": event.data.get("code"), "message": event.data.get("message")}
            current.will_retry = bool(event.data.get("will_retry"))
            del open_attempts[node_id]
    if finished:
        for attempt in open_attempts.values():
            attempt.status = "interrupted"
    return list(nodes.values())


def _end(attempt: NodeAttempt, event: ExecutionEvent, status: str) -> None:
    attempt.status = status
    attempt.finished_at = event.timestamp
    attempt.duration_ms = event.data.get("duration_ms")
    attempt.provider_ms = event.data.get("provider_ms")
    attempt.provider_first_token_ms = event.data.get("provider_first_token_ms")
    attempt.model = event.data.get("model")
