"""What a batch of events changes on its execution's row (the append's `UPDATE executions`).

`execution_started` makes the run running; a terminal event sets its status, end time,
outputs, error, token usage, duration, tokens by model (`data["models"]`, docs/runtime.md) and
the tokens the response cache saved. Other events change nothing but `last_sequence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentflow_grpc.model.events import EventType, ExecutionEvent, TokenUsage
from agentflow_grpc.model.records import ExecutionStatus

FINAL_STATUS = {
    EventType.EXECUTION_COMPLETED: ExecutionStatus.COMPLETED,
    EventType.EXECUTION_FAILED: ExecutionStatus.FAILED,
    EventType.EXECUTION_CANCELLED: ExecutionStatus.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class RowProgress:
    status: str | None = None
    final: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: TokenUsage | None = None
    duration_ms: float | None = None
    model_usage: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, events: Sequence[ExecutionEvent]) -> RowProgress:
        progress = cls()
        for event in events:
            if event.type is EventType.EXECUTION_STARTED:
                progress = cls(status=ExecutionStatus.RUNNING.value, started_at=event.timestamp)
            elif event.type in FINAL_STATUS:
                data = event.data
                error = data.get("error")
                if event.type is EventType.EXECUTION_CANCELLED:
                    error = {"code": "cancelled", "message": data.get("reason", "")}
                progress = cls(
                    status=FINAL_STATUS[event.type].value,
                    final=True,
                    started_at=progress.started_at,
                    finished_at=event.timestamp,
                    outputs=data.get("outputs"),
                    error=error,
                    usage=TokenUsage.from_dict(data.get("usage", {})),
                    duration_ms=data.get("duration_ms"),
                    model_usage=data.get("models"),
                )
        return progress

    def columns(self) -> list[Any]:
        """$5..$13 of the append."""
        usage = self.usage
        return [
            self.status,
            self.started_at,
            self.finished_at,
            self.outputs,
            self.error,
            None if usage is None else usage.prompt_tokens,
            None if usage is None else usage.completion_tokens,
            None if usage is None else usage.total_tokens,
            self.duration_ms,
        ]

    @property
    def cached_tokens(self) -> int | None:
        """$20: the tokens the response cache saved, from the terminal event."""
        return None if self.usage is None else self.usage.cached_tokens
