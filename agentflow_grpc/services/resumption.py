"""A background run taken over after the worker running it was lost (its replica died).

The run starts again from the beginning — nodes keep no checkpoints — and its events continue
the stored log: the new attempt's `execution_started` becomes `execution_resumed` (with why,
after which stored event, and which delivery this is), and every sequence number moves up past
what the log holds. Events the lost worker produced but never stored were never shown to anyone
on another replica (fan-out sends only stored events), so the log stays one consistent story.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import Any

from agentflow_grpc.engine.execution import Execution as EngineExecution
from agentflow_grpc.model.events import EventType, ExecutionEvent


class ResumedExecution:
    def __init__(
        self, running: EngineExecution, *, after_sequence: int, reason: str, delivery: int
    ) -> None:
        self._running = running
        self._offset = after_sequence
        self._resumed = {
            "reason": reason,
            "resumed_after_sequence": after_sequence,
            "delivery": delivery,
        }

    @property
    def inputs(self) -> dict[str, Any]:
        return self._running.inputs

    def cancel(self, reason: str = "cancelled by request") -> None:
        self._running.cancel(reason)

    async def events(self) -> AsyncGenerator[ExecutionEvent, None]:
        async for event in self._running.events():
            moved = dataclasses.replace(event, sequence=event.sequence + self._offset)
            if event.type is EventType.EXECUTION_STARTED:
                moved = dataclasses.replace(
                    moved, type=EventType.EXECUTION_RESUMED, data={**event.data, **self._resumed}
                )
            yield moved
