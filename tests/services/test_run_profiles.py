"""The run profile: where a run's time went, from its record and its trace (arithmetic only)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from agentflow_grpc.model.events import EventType, ExecutionEvent, TokenUsage
from agentflow_grpc.model.records import Execution, ExecutionStatus
from agentflow_grpc.services.run_profiles import busy_ms, run_profile
from agentflow_grpc.services.traces import build_trace

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def execution(
    *,
    created: float = 0,
    started: float | None = 100,
    finished: float | None = 1100,
    event_log_ms: float | None = 12.5,
) -> Execution:
    status = ExecutionStatus.COMPLETED if finished is not None else ExecutionStatus.RUNNING
    if started is None and finished is None:
        status = ExecutionStatus.PENDING
    return Execution(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        workflow_id=None,
        workflow_version=None,
        spec_hash="h",
        status=status,
        inputs={},
        outputs=None,
        error=None,
        usage=TokenUsage(),
        last_sequence=0,
        created_at=at(created),
        started_at=None if started is None else at(started),
        finished_at=None if finished is None else at(finished),
        duration_ms=None,
        created_by="test",
        event_log_ms=event_log_ms,
    )


def node_events(*specs: tuple[float, EventType, str, int, dict[str, Any]]) -> list[ExecutionEvent]:
    """Events at the given milliseconds (sorted by time, as a run stores them)."""
    ordered = sorted(specs, key=lambda spec: spec[0])
    return [
        ExecutionEvent("e", index, at(ms), kind, node, attempt, data)
        for index, (ms, kind, node, attempt, data) in enumerate(ordered, start=1)
    ]


def started(ms: float, node: str, attempt: int = 1) -> tuple[float, EventType, str, int, dict]:
    return (ms, EventType.NODE_STARTED, node, attempt, {"node_type": "llm"})


def completed(
    ms: float, node: str, attempt: int = 1, **data: Any
) -> tuple[float, EventType, str, int, dict]:
    return (ms, EventType.NODE_COMPLETED, node, attempt, {"output": None, **data})


def failed(
    ms: float, node: str, attempt: int = 1, **data: Any
) -> tuple[float, EventType, str, int, dict]:
    fields = {"code": "provider.unavailable", "message": "503", "will_retry": True}
    return (ms, EventType.NODE_FAILED, node, attempt, {**fields, **data})


# --- the union of intervals ---


def test_busy_time_counts_overlapping_intervals_once() -> None:
    assert busy_ms([]) == 0
    assert busy_ms([(at(0), at(100))]) == 100
    assert busy_ms([(at(0), at(100)), (at(50), at(150))]) == 150  # overlapping
    assert busy_ms([(at(0), at(300)), (at(100), at(200))]) == 300  # one inside the other
    assert busy_ms([(at(0), at(100)), (at(100), at(200))]) == 200  # touching
    assert busy_ms([(at(200), at(300)), (at(0), at(100))]) == 200  # apart, in any order
    assert busy_ms([(at(0), at(100)), (at(100), at(100)), (at(90), at(80))]) == 100  # empty ones


# --- the profile ---


def test_sequential_nodes_and_the_engine_time_between_them() -> None:
    trace = build_trace(
        node_events(
            started(100, "start"),
            completed(110, "start"),
            started(150, "ask"),
            completed(950, "ask", provider_ms=700.0, provider_first_token_ms=120.0),
        )
    )
    profile = run_profile(execution(), trace, now=at(99_999))

    assert profile.queue_wait_ms == 100
    assert profile.wall_ms == 1000
    assert profile.nodes_ms == 10 + 800
    assert profile.engine_ms == 1000 - 810
    assert profile.provider_ms == 700
    assert profile.event_log_ms == 12.5


def test_parallel_branches_count_once_in_node_time_and_add_up_in_provider_time() -> None:
    trace = build_trace(
        node_events(
            started(100, "left"),
            started(120, "right"),
            completed(700, "left", provider_ms=550.0),
            completed(900, "right", provider_ms=750.0),
            started(950, "join"),
            completed(1000, "join"),
        )
    )
    profile = run_profile(execution(), trace, now=at(99_999))

    assert profile.nodes_ms == (900 - 100) + (1000 - 950)  # not 600 + 780 + 50
    assert profile.engine_ms == 1000 - 850
    assert profile.provider_ms == 550 + 750  # the calls' own time, summed
    assert profile.nodes_ms <= profile.wall_ms


def test_a_retried_node_counts_both_attempts_and_the_backoff_between_as_engine_time() -> None:
    trace = build_trace(
        node_events(
            started(100, "ask", 1),
            failed(300, "ask", 1, provider_ms=180.0),  # a failed call still took its time
            started(500, "ask", 2),
            completed(800, "ask", 2, provider_ms=250.0),
        )
    )
    (node,) = trace
    assert [attempt.provider_ms for attempt in node.attempts] == [180.0, 250.0]
    profile = run_profile(execution(finished=900), trace, now=at(99_999))

    assert profile.wall_ms == 800
    assert profile.nodes_ms == 200 + 300
    assert profile.engine_ms == 800 - 500  # the 200 ms backoff is in here
    assert profile.provider_ms == 180 + 250


def test_a_run_still_going_is_measured_up_to_now() -> None:
    trace = build_trace(
        node_events(started(100, "start"), completed(150, "start"), started(200, "ask"))
    )
    assert trace[1].status == "running"
    profile = run_profile(
        execution(started=100, finished=None, event_log_ms=None), trace, now=at(700)
    )

    assert profile.wall_ms == 600
    assert profile.nodes_ms == 50 + 500  # the running attempt counts until now
    assert profile.engine_ms == 50
    assert profile.provider_ms == 0
    assert profile.event_log_ms == 0  # stored with the terminal event only


def test_an_interrupted_attempt_ends_with_the_run() -> None:
    events = node_events(started(100, "ask"))
    events.append(
        ExecutionEvent("e", 2, at(400), EventType.EXECUTION_CANCELLED, None, None, {"reason": "x"})
    )
    trace = build_trace(events)
    assert trace[0].status == "interrupted"
    profile = run_profile(execution(finished=400), trace, now=at(99_999))

    assert (profile.wall_ms, profile.nodes_ms, profile.engine_ms) == (300, 300, 0)


def test_a_queued_run_has_waited_until_now_and_one_cancelled_in_the_queue_until_its_end() -> None:
    waiting = run_profile(execution(started=None, finished=None), [], now=at(2500))
    assert (waiting.queue_wait_ms, waiting.wall_ms, waiting.nodes_ms) == (2500, 0, 0)
    assert waiting.engine_ms == 0

    never_ran = run_profile(execution(started=None, finished=800), [], now=at(99_999))
    assert (never_ran.queue_wait_ms, never_ran.wall_ms) == (800, 0)


def test_node_time_never_passes_wall_time_so_engine_time_is_never_negative() -> None:
    # Clocks of two replicas (a resumed run) can put an attempt outside the run's own times.
    trace = build_trace(node_events(started(50, "ask"), completed(1200, "ask")))
    profile = run_profile(execution(started=100, finished=1100), trace, now=at(99_999))

    assert profile.nodes_ms == profile.wall_ms == 1000
    assert profile.engine_ms == 0
