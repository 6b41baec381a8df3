"""What the audit log learns from calls: a refused credential, a call the roles table refused, a
change that failed, and the success of a change the roles table marks `audited_by_call` (runs
started and cancelled); every other change that succeeds is recorded by the change itself, in its
own transaction (storage/audit.py). Successes are recorded in the background, off the call's
path (a bounded number at once; beyond that the call waits for its row).

Refused credentials come from anyone on the network, so they are recorded once per caller address
and reason a minute (per server): a flood of bad keys costs a row a minute per address, not a row
per request. Every refusal is still in the access log and counted by
`agentflow_rpc_requests_total{code="UNAUTHENTICATED"}`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

import grpc
from cachetools import TTLCache

from agentflow_grpc.api import access
from agentflow_grpc.model.errors import (
    AgentFlowError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from agentflow_grpc.model.records import Principal
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.audit")

ANONYMOUS = "anonymous"
_REFUSALS_WINDOW = 60.0
_BACKGROUND_WRITES = 256  # success rows being written at once before calls wait for theirs
_REFUSALS_TRACKED = 10_000
# Fields of a request or answer that name the resource a call is about, in the order they are
# looked for (`execution`: a run's event).
_RESOURCE_FIELDS = ("execution", "name", "parent", "workflow")


class AuditRecorder(Protocol):
    """AuditService.record: one row in its own transaction (tenant None: the system chain)."""

    def __call__(
        self,
        tenant_id: uuid.UUID | None,
        *,
        actor: str,
        action: str,
        resource_type: str,
        resource_id: str,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> Awaitable[None]: ...


class CallAudit:
    def __init__(self, record: AuditRecorder) -> None:
        self._record = record
        self._writing: set[asyncio.Task[None]] = set()
        # (address, reason) refused and recorded in the current window.
        self._refusals: TTLCache[tuple[str, str], bool] = TTLCache(
            _REFUSALS_TRACKED, _REFUSALS_WINDOW, timer=time.monotonic
        )

    async def failed_call(
        self,
        *,
        method: str,
        request: Any,
        principal: Principal | None,
        error: Exception,
        metadata: Mapping[str, Any],
        peer: str,
    ) -> None:
        """Record `error` ending a call to `method`, if the audit log keeps such a thing."""
        try:
            if principal is None and isinstance(
                error, (UnauthenticatedError, PermissionDeniedError)
            ):  # a credential refused (unknown, revoked, expired; a token mapping to no role)
                await self._refused_credential(method, error, metadata, peer)
            elif principal is not None and (
                isinstance(error, PermissionDeniedError) or access.rule_for(method).mutates
            ):
                await self._failed(method, request, principal, error, metadata)
        except Exception:  # the audit log is down: the call's own answer still goes out
            log.exception("audit.write_failed", method=method)

    async def succeeded(
        self,
        *,
        method: str,
        principal: Principal,
        request: Any,
        response: Any,
        metadata: Mapping[str, Any],
    ) -> None:
        """Record a successful call to `method` about the resource its answer names (a run's
        event or Execution: `executions/{id}`), else its request."""
        resource_type, resource_id = _resource(method, response, request)
        write = self._write_quietly(
            principal.tenant_id,
            actor=principal.actor,
            action=_action(method),
            resource_type=resource_type,
            resource_id=resource_id,
            outcome="ok",
            details=_details(method, None, metadata),
        )
        if len(self._writing) >= _BACKGROUND_WRITES:
            await write
            return
        task = asyncio.create_task(write)  # the call's context (its origin) goes with it
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write_quietly(self, tenant_id: uuid.UUID, **row: Any) -> None:
        try:
            await self._record(tenant_id, **row)
        except Exception:
            log.exception("audit.write_failed", action=row.get("action"))

    async def close(self) -> None:
        """Wait for the success rows still being written."""
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

    async def _refused_credential(
        self,
        method: str,
        error: AgentFlowError,
        metadata: Mapping[str, Any],
        peer: str,
    ) -> None:
        address = _forwarded_for(metadata) or peer
        window = (address, error.message)
        if window in self._refusals:
            return
        self._refusals[window] = True
        await self._record(
            None,
            actor=ANONYMOUS,
            action="auth.refused",
            resource_type="credential",
            resource_id=_credential_kind(metadata),
            outcome=error.code,
            details=_details(method, error, metadata),
        )

    async def _failed(
        self,
        method: str,
        request: Any,
        principal: Principal,
        error: Exception,
        metadata: Mapping[str, Any],
    ) -> None:
        resource_type, resource_id = _resource(method, request)
        await self._record(
            principal.tenant_id,
            actor=principal.actor,
            action=_action(method),
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=_outcome(error),
            details=_details(method, error, metadata),
        )


def _action(method: str) -> str:
    """`/agentflow.v1.WorkflowService/DeleteWorkflow` → `WorkflowService.DeleteWorkflow`."""
    service, _, name = method.lstrip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}.{name}"


def _resource(method: str, *messages: Any) -> tuple[str, str]:
    """The resource the first of `messages` to name one names (`workflows/{id}` → workflow,
    id), else the method."""
    for message in messages:
        for field in _RESOURCE_FIELDS:
            value = getattr(message, field, None)
            if isinstance(value, str) and "/" in value:
                collection, _, resource_id = value.partition("/")
                return collection.removesuffix("s"), resource_id
    return "method", _action(method)


def _outcome(error: Exception) -> str:
    if isinstance(error, AgentFlowError):
        return error.code
    if isinstance(error, grpc.aio.AbortError):
        return "aborted"
    return "internal"


def _credential_kind(metadata: Mapping[str, Any]) -> str:
    """What was sent, never the credential: `api_key:af_xxxxxxxxx` (its shown prefix), `token`,
    `other`, or `none`."""
    credential = str(metadata.get("x-api-key") or "")
    if not credential:
        scheme, _, credential = str(metadata.get("authorization", "")).partition(" ")
        credential = credential.strip() if scheme.lower() == "bearer" else ""
    if not credential:
        return "none"
    if credential.startswith("af_"):
        return f"api_key:{credential[:12]}"
    if credential.count(".") == 2:
        return "token"
    return "other"


def _forwarded_for(metadata: Mapping[str, Any]) -> str:
    """The browser's address, for a call through Envoy (the first of `x-forwarded-for`)."""
    return str(metadata.get("x-forwarded-for", "")).split(",")[0].strip()


def _details(method: str, error: Exception | None, metadata: Mapping[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = {"method": method}
    if isinstance(error, AgentFlowError):
        details["reason"] = error.message[:500]
    forwarded = _forwarded_for(metadata)
    if forwarded:
        details["forwarded_for"] = forwarded
    return details
