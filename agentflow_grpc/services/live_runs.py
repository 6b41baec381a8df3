"""The runs this server drives now, by execution id; following one of them from memory.

A run is listed from the moment it is prepared (streamed here, or a queued one a worker took
up) until its log is stored to the end. Each listed run holds one of the server's run slots
(`Admission`); `finished` — every RecordedRun's `on_finish` — gives it back and settles the
run's tenant limits. Runs not listed here are followed through the log and Redis
(`remote_runs.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from agentflow_grpc.model.events import ExecutionEvent
from agentflow_grpc.services.admission import Admission
from agentflow_grpc.services.recorded_run import RecordedRun
from agentflow_grpc.services.run_records import RunRecords


class LiveRuns:
    def __init__(self, admission: Admission, records: RunRecords) -> None:
        self._admission = admission
        self._records = records
        self._runs: dict[uuid.UUID, RecordedRun] = {}

    def add(self, run: RecordedRun) -> None:
        self._runs[run.id] = run

    def get(self, execution_id: uuid.UUID) -> RecordedRun | None:
        return self._runs.get(execution_id)

    def all(self) -> list[RecordedRun]:
        return list(self._runs.values())

    def finished(self, run: RecordedRun) -> None:
        """The run's log is stored to its end (or could not be): off the list, its server slot
        back, its tenant limits settled."""
        if self._runs.pop(run.id, None) is not None:
            self._admission.leave()
        self._admission.settle(run)

    def cancel(self, execution_id: uuid.UUID, reason: str) -> None:
        """Cancel the run if it runs here (a cancel request from another replica)."""
        run = self._runs.get(execution_id)
        if run is not None:
            run.cancel(reason)

    def watch(self, execution_id: uuid.UUID) -> None:
        """Publish the run's events if it runs here (a watch request from another replica)."""
        run = self._runs.get(execution_id)
        if run is not None:
            run.watch()

    async def follow(
        self, run: RecordedRun, *, after_sequence: int
    ) -> AsyncIterator[ExecutionEvent]:
        """The run's events after `after_sequence`, from memory (every event so far, then the
        live ones: no gap), until the terminal one, or until the run stops here without one
        (handed over: the caller follows it elsewhere)."""
        last = after_sequence
        queue = run.subscribe()
        try:
            while (event := await queue.get()) is not None:
                if event.sequence > last + 1:
                    # A resumed run holds only its own events: the earlier ones are stored.
                    earlier = await self._records.events(
                        run.record.tenant_id,
                        run.id,
                        after_sequence=last,
                        limit=event.sequence - last - 1,
                    )
                    for stored in earlier:
                        yield stored
                        last = stored.sequence
                if event.sequence > last:
                    yield event
                    last = event.sequence
                    if event.is_terminal:
                        return
        finally:
            run.unsubscribe(queue)
