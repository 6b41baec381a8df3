"""Where a run's time went: its profile, computed from its record and its per-node trace.

Pure functions, no I/O (docs/observability.md, "Run profiles"):

- `queue_wait_ms`: created → started (a background run's wait for a worker; about 0 for
  ExecuteWorkflow). Still pending: created → now. Ended without starting: created → ended.
- `wall_ms`: started → ended (started → now while it runs).
- `nodes_ms`: the time at least one node attempt was running, the union of the attempts'
  intervals (parallel branches overlap and count once), clipped to the run's wall time. An
  attempt that never ended runs until now (run going on) or the run's end (interrupted).
- `engine_ms`: wall_ms - nodes_ms, never negative: scheduling, state, outputs between nodes.
- `provider_ms`: every attempt's provider time, summed (parallel calls add up, so it may pass
  `nodes_ms`).
- `event_log_ms`: the time spent appending the run's events, from the record (0 until it ends).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from agentflow_grpc.model.records import Execution
from agentflow_grpc.services.traces import NodeTrace

Interval = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class RunProfile:
    queue_wait_ms: float
    wall_ms: float
    nodes_ms: float
    engine_ms: float
    provider_ms: float
    event_log_ms: float


def run_profile(execution: Execution, trace: Sequence[NodeTrace], *, now: datetime) -> RunProfile:
    """The profile of `execution` as of `now` (which only matters while it is not over)."""
    started, finished = execution.started_at, execution.finished_at
    if started is None:
        queue_wait = _ms(execution.created_at, finished or now)
        wall = nodes = 0.0
    else:
        queue_wait = _ms(execution.created_at, started)
        end = finished or now
        wall = _ms(started, end)
        nodes = busy_ms(_clip(attempt_intervals(trace, end), started, end))
    provider = sum(attempt.provider_ms or 0.0 for node in trace for attempt in node.attempts)
    return RunProfile(
        queue_wait_ms=_rounded(queue_wait),
        wall_ms=_rounded(wall),
        nodes_ms=_rounded(nodes),
        engine_ms=_rounded(max(0.0, wall - nodes)),
        provider_ms=_rounded(provider),
        event_log_ms=_rounded(execution.event_log_ms or 0.0),
    )


def attempt_intervals(trace: Iterable[NodeTrace], open_until: datetime) -> list[Interval]:
    """(start, end) of every attempt; one that has not ended (running, interrupted) ends at
    `open_until`."""
    return [
        (attempt.started_at, attempt.finished_at or open_until)
        for node in trace
        for attempt in node.attempts
    ]


def busy_ms(intervals: Iterable[Interval]) -> float:
    """The length of the union of `intervals` in milliseconds: overlapping time counts once."""
    total = 0.0
    current: Interval | None = None
    for start, end in sorted(interval for interval in intervals if interval[1] > interval[0]):
        if current is None or start > current[1]:
            if current is not None:
                total += _ms(*current)
            current = (start, end)
        elif end > current[1]:
            current = (current[0], end)
    if current is not None:
        total += _ms(*current)
    return total


def _clip(intervals: Iterable[Interval], low: datetime, high: datetime) -> list[Interval]:
    return [(max(start, low), min(end, high)) for start, end in intervals]


def _ms(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() * 1000)


def _rounded(ms: float) -> float:
    return round(ms, 3)
