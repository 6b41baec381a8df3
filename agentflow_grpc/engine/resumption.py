"""Resuming a run from its event log: what it had done, read back from the stored events.

The log is the run's history — there is no second store of checkpoints to keep in step with
it. A node's `node_completed` event (its output) is stored before anything that follows it
runs, so every completion in the log can be handed back instead of run again
(compiler/replay.py), and a node whose last attempt started and never ended was in flight.
The resumed run's events continue the log: its first is `execution_resumed`, numbered after
the last stored one, listing what was restored; its terminal event sums the tokens of the
whole run, the restored completions' included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentflow_grpc.compiler.replay import Replay
from agentflow_grpc.model.events import EventType, ExecutionEvent


@dataclass(frozen=True, slots=True)
class Resumption:
    """A run taken up again: its stored events and why it is resumed."""

    events: Sequence[ExecutionEvent]  # the stored log, in order
    reason: str
    delivery: int  # how often its job has been handed out (1: by the server that started it)
    _open: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for event in self.events:  # node id → the attempt started and not (yet) ended
            if event.node_id is None:
                continue
            if event.type is EventType.NODE_STARTED:
                self._open[event.node_id] = event.attempt or 1
            elif event.type in (EventType.NODE_COMPLETED, EventType.NODE_FAILED):
                self._open.pop(event.node_id, None)

    @property
    def after_sequence(self) -> int:
        return self.events[-1].sequence if self.events else 0

    @property
    def first_timestamp(self) -> datetime | None:
        """When the run first started (its log's first event)."""
        return self.events[0].timestamp if self.events else None

    def completions(self) -> list[ExecutionEvent]:
        return [e for e in self.events if e.type is EventType.NODE_COMPLETED]

    def replay(self) -> Replay:
        """The completions to hand back, by node in recorded order, and the nodes in flight."""
        outputs: dict[str, list[Any]] = {}
        for event in self.completions():
            assert event.node_id is not None
            outputs.setdefault(event.node_id, []).append(event.data.get("output"))
        return Replay(outputs, self._open)

    def retried_failures(self) -> int:
        return sum(
            1
            for e in self.events
            if e.type is EventType.NODE_FAILED and e.data.get("will_retry", False)
        )

    def described(self) -> dict[str, Any]:
        """What `execution_resumed` says beside `execution_started`'s fields."""
        counts = Counter(e.node_id for e in self.completions())
        return {
            "reason": self.reason,
            "resumed_after_sequence": self.after_sequence,
            "delivery": self.delivery,
            "restored_nodes": [
                {"node_id": node_id, "completions": count} for node_id, count in counts.items()
            ],
            "interrupted_nodes": sorted(self._open),
        }
