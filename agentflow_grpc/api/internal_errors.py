"""What becomes of a call's unexpected exception, besides its INTERNAL status and log line.

`InternalErrors.crashed(...)` reports it to the error tracker (`observability.error_reports`:
Sentry when `SENTRY_DSN` is set) with the method and request id as tags, and, when the call's
tenant is known, records it as an `internal` occurrence of the tenant's error groups (the
`record` callback, `ErrorGroupService.record_internal`). The recording runs as a task of its
own, bounded by `timeout`: the call's answer never waits for it, and its failure is logged and
swallowed. A call that failed before its key was known goes to the tracker only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from agentflow_grpc.observability import error_reports
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.api")

# Records an internal error of a call of the tenant to the method.
InternalErrorRecorder = Callable[[uuid.UUID, str, Exception], Awaitable[None]]

RECORD_TIMEOUT = 5.0  # seconds a recording may take before it is given up


class InternalErrors:
    def __init__(
        self, record: InternalErrorRecorder | None, *, timeout: float = RECORD_TIMEOUT
    ) -> None:
        self._record = record
        self._timeout = timeout
        self._pending: set[asyncio.Task[None]] = set()  # kept referenced until done

    def crashed(
        self, exc: Exception, *, method: str, request_id: str, tenant_id: uuid.UUID | None
    ) -> None:
        """Report `exc`, and record it in the background (the module doc); never raises."""
        error_reports.report(exc, method=method, request_id=request_id, tenant_id=tenant_id)
        if tenant_id is None or self._record is None:
            return
        task = asyncio.create_task(
            self._recorded(self._record, tenant_id, method, exc), name="record-internal-error"
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def wait(self) -> None:
        """Until the recordings started so far have ended (a server that stops)."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def _recorded(
        self, record: InternalErrorRecorder, tenant_id: uuid.UUID, method: str, exc: Exception
    ) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await record(tenant_id, method, exc)
        except Exception:  # TimeoutError included: the error is in the log all the same
            log.warning("internal_error.not_recorded", method=method, exc_info=True)
