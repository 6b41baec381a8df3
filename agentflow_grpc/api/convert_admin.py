"""API keys, tenants, audit events and the caller ↔ their protobuf messages (admin.proto,
identity.proto)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from agentflow_grpc._gen.agentflow.v1 import admin_pb2, identity_pb2
from agentflow_grpc.api.convert import id_from_name, name_of, timestamp
from agentflow_grpc.limits import LimitPolicy
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import (
    ApiKey,
    ApiKeyState,
    AuditEntry,
    Principal,
    Role,
    Tenant,
    TenantLimits,
)

STATE_OF_KEY = {
    ApiKeyState.ACTIVE: admin_pb2.ApiKey.STATE_ACTIVE,
    ApiKeyState.EXPIRED: admin_pb2.ApiKey.STATE_EXPIRED,
    ApiKeyState.REVOKED: admin_pb2.ApiKey.STATE_REVOKED,
}

LIMIT_FIELDS = tuple(field.name for field in dataclasses.fields(TenantLimits))


def role_of(text: str, *, field: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise InvalidArgumentError(
            f"{field} must be one of {', '.join(role.value for role in Role)}, not {text[:40]!r}",
            field=field,
        ) from None


def api_key_to_proto(key: ApiKey, *, now: datetime | None = None) -> admin_pb2.ApiKey:
    return admin_pb2.ApiKey(
        name=name_of("apiKeys", key.id),
        role=key.role.value,
        description=key.description,
        expire_time=timestamp(key.expires_at),
        workflows=[name_of("workflows", workflow) for workflow in key.workflow_ids or ()],
        prefix=key.prefix,
        state=STATE_OF_KEY[key.state(now or datetime.now(UTC))],
        create_time=timestamp(key.created_at),
        creator=key.created_by,
        last_use_time=timestamp(key.last_used_at),
        revoke_time=timestamp(key.revoked_at),
        rotated_from="" if key.rotated_from is None else name_of("apiKeys", key.rotated_from),
    )


def workflow_ids(names: Iterable[str], *, field: str) -> tuple[uuid.UUID, ...] | None:
    """`workflows/{id}` names → their ids; none: None (every workflow)."""
    ids = tuple(
        id_from_name(name, "workflows", field=f"{field}[{index}]")
        for index, name in enumerate(names)
    )
    return ids or None


def limits_to_proto(limits: TenantLimits) -> admin_pb2.TenantLimits:
    given = {name: value for name, value in dataclasses.asdict(limits).items() if value is not None}
    return admin_pb2.TenantLimits(**given)


def limits_from_proto(message: admin_pb2.TenantLimits) -> TenantLimits:
    given: Any = message  # HasField's stubs take each field name as a literal
    return TenantLimits(
        **{name: getattr(message, name) for name in LIMIT_FIELDS if given.HasField(name)}
    )


def tenant_to_proto(tenant: Tenant, defaults: LimitPolicy) -> admin_pb2.Tenant:
    return admin_pb2.Tenant(
        name="tenant",
        display_name=tenant.name,
        create_time=timestamp(tenant.created_at),
        limits=limits_to_proto(tenant.limits),
        effective_limits=limits_to_proto(defaults.for_tenant(tenant.limits).tenant_limits()),
    )


def audit_event_to_proto(entry: AuditEntry) -> admin_pb2.AuditEvent:
    return admin_pb2.AuditEvent(
        name=f"auditEvents/{entry.id}",
        occur_time=timestamp(entry.occurred_at),
        actor=entry.actor,
        action=entry.action,
        resource_type=entry.resource_type,
        resource_id=entry.resource_id,
        outcome=entry.outcome,
        request_id=entry.request_id or "",
        trace_id=entry.trace_id or "",
        source_address=entry.source_address or "",
        before_hash=entry.before_hash or "",
        after_hash=entry.after_hash or "",
        chain_sequence=entry.chain_seq,
        previous_hash=entry.prev_hash or "",
        hash=entry.row_hash or "",
        details={
            key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            for key, value in entry.details.items()
        },
    )


def caller_to_proto(principal: Principal, tenant: Tenant) -> identity_pb2.Caller:
    return identity_pb2.Caller(
        tenant=tenant.name,
        role=principal.role.value,
        actor=principal.actor,
        expire_time=timestamp(principal.expires_at),
        workflows=sorted(
            name_of("workflows", workflow) for workflow in principal.workflow_ids or ()
        ),
    )
