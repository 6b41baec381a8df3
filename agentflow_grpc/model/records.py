"""What the repositories return: plain, immutable records of stored rows.

They carry no secrets: a source's record names its secrets but never holds their values.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from agentflow_grpc.model.errors import EtagMismatchError, InvalidArgumentError
from agentflow_grpc.model.events import TokenUsage

# As issued (`7`), or quoted the HTTP way (`"7"`, `W/"7"`).
_ETAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def etag_of(revision: int) -> str:
    """The etag of a stored revision: opaque to clients (the revision number, in fact)."""
    return str(revision)


def revision_of(etag: str) -> int:
    """The revision an etag names; InvalidArgumentError(field="etag") if it is not one of ours."""
    match = _ETAG.match(etag.strip())
    if match is None:
        raise InvalidArgumentError(f"{etag[:40]!r} is not an etag this server issued", field="etag")
    return int(match.group(1))


def check_etag(etag: str | None, *, current: int, resource: str) -> None:
    """Nothing when `etag` is None or names revision `current`; else the right error."""
    if not etag:
        return
    expected = revision_of(etag)
    if expected != current:
        raise EtagMismatchError(
            f"{resource} has changed since etag {etag}: it is now at {etag_of(current)}; "
            "read it again and reapply the change"
        )


class Role(StrEnum):
    """What an API key may do; each role includes the ones after it."""

    ADMIN = "admin"  # everything, API keys included
    EDITOR = "editor"  # create and change workflows and sources, run them
    RUNNER = "runner"  # run workflows, read everything
    VIEWER = "viewer"  # read only


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        )


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A tenant's own limits, each overriding the server's default (docs/security.md); None
    keeps the default, 0 means unlimited, as in the settings."""

    requests_per_second: float | None = None
    request_burst: int | None = None
    key_requests_per_second: float | None = None
    key_request_burst: int | None = None
    max_concurrent_executions: int | None = None
    key_max_concurrent_executions: int | None = None
    tokens_per_day: int | None = None


@dataclass(frozen=True, slots=True)
class Tenant:
    id: uuid.UUID
    name: str
    created_at: datetime
    limits: TenantLimits = field(default_factory=TenantLimits)


class ApiKeyState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"  # past its expiry (a rotated key, once its grace period is over)
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str  # the key's first characters, to tell keys apart; the rest is never stored
    role: Role
    description: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    # The workflows the key may use (a restricted key); None: every workflow of its tenant.
    workflow_ids: tuple[uuid.UUID, ...] | None = None
    rotated_from: uuid.UUID | None = None  # the key this one replaced (RotateApiKey)

    def state(self, now: datetime) -> ApiKeyState:
        if self.revoked_at is not None:
            return ApiKeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return ApiKeyState.EXPIRED
        return ApiKeyState.ACTIVE


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and role of an authenticated API key, or of a person signed
    in through OpenID Connect (`subject`, and no key)."""

    tenant_id: uuid.UUID
    role: Role
    api_key_id: uuid.UUID | None = None
    subject: str | None = None  # an OpenID Connect sign-in: `{issuer}#{sub}`
    # A restricted key's workflows; None: every workflow of the tenant.
    workflow_ids: frozenset[uuid.UUID] | None = None
    expires_at: datetime | None = None  # when the credential stops being valid

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        if self.api_key_id is not None:
            return f"api_key:{self.api_key_id}"
        return f"oidc:{self.subject}"

    @property
    def restricted(self) -> bool:
        return self.workflow_ids is not None

    def may_use_workflow(self, workflow_id: uuid.UUID) -> bool:
        return self.workflow_ids is None or workflow_id in self.workflow_ids


@dataclass(frozen=True, slots=True)
class SignIn:
    """A person signed in through OpenID Connect: what a verified access token says about them
    once its claims are mapped (identity/oidc.py); the tenant is named, not yet looked up."""

    issuer: str
    subject: str  # the token's `sub`
    tenant_name: str
    role: Role
    expires_at: datetime
    token_id: str | None = None  # `jti`, when the token has one

    @property
    def actor(self) -> str:
        return f"oidc:{self.issuer}#{self.subject}"


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow with its current version's spec."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    version: int
    spec: dict[str, Any]
    spec_hash: str
    revision: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    created_by: str
    updated_by: str

    @property
    def etag(self) -> str:
        return etag_of(self.revision)


@dataclass(frozen=True, slots=True)
class WorkflowVersion:
    workflow_id: uuid.UUID
    version: int
    spec: dict[str, Any]
    spec_hash: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class StoredSource:
    """A source as stored, without its secrets' values (`secret_names` says which are set)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    type: str
    description: str
    config: dict[str, Any]
    secret_names: tuple[str, ...]
    revision: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    created_by: str
    updated_by: str

    @property
    def etag(self) -> str:
        return etag_of(self.revision)


@dataclass(frozen=True, slots=True)
class Execution:
    id: uuid.UUID
    tenant_id: uuid.UUID
    workflow_id: uuid.UUID | None
    workflow_version: int | None
    spec_hash: str
    status: ExecutionStatus
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    usage: TokenUsage
    last_sequence: int  # events stored so far
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    created_by: str
    # The W3C trace the run belongs to (32 hex digits): the trace of the call that started it,
    # which its spans continue; None for runs recorded before traces were kept.
    trace_id: str | None = None
    # Time spent storing its events (ms), kept when it ended; None before that.
    event_log_ms: float | None = None
    # Tokens by model, kept when it ended: [{provider, model, calls, input_tokens,
    # output_tokens, cached_tokens}] (docs/runtime.md, execution_completed's `models`).
    model_usage: list[dict[str, Any]] = field(default_factory=list)
    # The `webhook` source told when it ends (docs/webhooks.md); None: no webhook.
    webhook_source_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log (storage/audit.py): who did what to which resource, from
    where, with what outcome; chained by hash to the row before it in its tenant's chain."""

    id: int
    tenant_id: uuid.UUID | None  # None: the system's chain (a credential of no known tenant)
    occurred_at: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    before_hash: str | None
    after_hash: str | None
    details: dict[str, Any]
    request_id: str | None = None
    trace_id: str | None = None
    source_address: str | None = None
    outcome: str = "ok"  # "ok", or the refusal's code (e.g. "permission_denied")
    chain_seq: int = 0
    prev_hash: str | None = None
    row_hash: str | None = None
