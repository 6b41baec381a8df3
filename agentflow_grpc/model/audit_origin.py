"""Where the change being made comes from, for the audit log: set by the API for each call (its
request id, trace id and the caller's address), read by storage/audit.py when it writes a row.

A context variable, as structlog's are: each RPC runs in its own task, so each sees its own, and
work outside a call (the CLI, a background run) has none.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuditOrigin:
    request_id: str | None = None
    trace_id: str | None = None
    source_address: str | None = None


_NOWHERE = AuditOrigin()
_origin: ContextVar[AuditOrigin] = ContextVar("agentflow_audit_origin", default=_NOWHERE)


def current_origin() -> AuditOrigin:
    return _origin.get()


def set_origin(origin: AuditOrigin | None) -> None:
    _origin.set(origin or _NOWHERE)
