"""The per-node trace folded from a run's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.services.traces import build_trace

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def events(
    *specs: tuple[EventType, str | None, int | None, dict[str, Any]],
) -> list[ExecutionEvent]:
    return [
        ExecutionEvent("e", index, T0 + timedelta(seconds=index), kind, node, attempt, data)
        for index, (kind, node, attempt, data) in enumerate(specs, start=1)
    ]


USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_attempts_retries_tokens_and_outputs() -> None:
    trace = build_trace(
        events(
            (EventType.EXECUTION_STARTED, None, None, {}),
            (EventType.NODE_STARTED, "start", 1, {"node_type": "input"}),
            (EventType.NODE_COMPLETED, "start", 1, {"output": {"q": 1}, "duration_ms": 0.1}),
            (EventType.NODE_STARTED, "llm", 1, {"node_type": "llm"}),
            (EventType.NODE_FAILED, "llm", 1, {"code": "provider.rate_limited", "message": "429",
                                               "duration_ms": 5.0, "will_retry": True}),
            (EventType.NODE_STARTED, "llm", 2, {"node_type": "llm"}),
            (EventType.NODE_TOKEN, "llm", 2, {"text": "Hel"}),
            (EventType.NODE_TOKEN, "llm", 2, {"text": "lo"}),
            (EventType.NODE_COMPLETED, "llm", 2, {"output": {"text": "Hello"}, "duration_ms": 9.0,
                                                  "usage": USAGE}),
            (EventType.EXECUTION_COMPLETED, None, None, {"outputs": {}}),
        )
    )  # fmt: skip
    start, llm = trace
    assert (start.node_type, start.status, start.attempts[0].output) == (
        "input",
        "completed",
        {"q": 1},
    )
    assert llm.status == "completed"
    failed, succeeded = llm.attempts
    assert (failed.attempt, failed.status, failed.will_retry) == (1, "failed", True)
    assert failed.error == {"code": "provider.rate_limited", "message": "429"}
    assert (succeeded.attempt, succeeded.streamed_text, succeeded.output) == (
        2,
        "Hello",
        {"text": "Hello"},
    )
    assert (succeeded.first_sequence, succeeded.last_sequence) == (6, 9)
    assert succeeded.duration_ms == 9.0
    assert llm.usage.total_tokens == 7
    assert succeeded.started_at == T0 + timedelta(seconds=6)
    assert succeeded.finished_at == T0 + timedelta(seconds=9)


def test_an_unfinished_attempt_is_interrupted_once_the_run_ends_and_running_before() -> None:
    running = events(
        (EventType.EXECUTION_STARTED, None, None, {}),
        (EventType.NODE_STARTED, "slow", 1, {"node_type": "llm"}),
    )
    assert build_trace(running)[0].status == "running"
    ended = [*running, *events((EventType.EXECUTION_CANCELLED, None, None, {"reason": "x"}))]
    assert build_trace(ended)[0].status == "interrupted"


def test_a_node_in_a_loop_lists_every_pass() -> None:
    trace = build_trace(
        events(
            (EventType.NODE_STARTED, "draft", 1, {"node_type": "llm"}),
            (EventType.NODE_COMPLETED, "draft", 1, {"output": 1, "duration_ms": 1}),
            (EventType.NODE_STARTED, "draft", 1, {"node_type": "llm"}),
            (EventType.NODE_COMPLETED, "draft", 1, {"output": 2, "duration_ms": 1}),
        )
    )
    (draft,) = trace
    assert [attempt.output for attempt in draft.attempts] == [1, 2]
