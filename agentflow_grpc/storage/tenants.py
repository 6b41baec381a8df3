"""Tenants, their own limits, and their API keys.

An API key is `af_` and 43 random URL-safe characters (256 bits). Only its SHA-256 is stored:
a key with that much entropy needs no slow hash, and lookup by hash is one index probe. The
first characters are kept as `prefix`, so people can tell their keys apart in a listing.

A key may expire (`expires_at`), be restricted to some of its tenant's workflows
(`workflow_ids`), be revoked, and be rotated: a new key with the same role, description and
workflows (`rotated_from` the old one), the old one expiring at the end of a grace period.
Every change writes its audit row in the change's transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import secrets
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from agentflow_grpc.model.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from agentflow_grpc.model.records import ApiKey, Principal, Role, Tenant, TenantLimits
from agentflow_grpc.storage import audit
from agentflow_grpc.storage.database import Connection

KEY_PREFIX = "af_"
_SHOWN_CHARACTERS = 12
_TENANT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_GRACE = timedelta(days=30)

# What each of a tenant's limits may be, as the server's settings (config.py) allow: the least
# and the most (0: unlimited, where the least is 0).
_LIMIT_RANGES: dict[str, tuple[float, float]] = {
    "requests_per_second": (0, 1_000_000),
    "request_burst": (1, 10_000_000),
    "key_requests_per_second": (0, 1_000_000),
    "key_request_burst": (1, 10_000_000),
    "max_concurrent_executions": (0, 1_000_000),
    "key_max_concurrent_executions": (0, 1_000_000),
    "tokens_per_day": (0, 10**15),
}
_FRACTIONAL_LIMITS = frozenset({"requests_per_second", "key_requests_per_second"})


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def check_tenant_name(name: str) -> None:
    if not _TENANT_NAME.match(name):
        raise InvalidArgumentError(
            f"tenant name {name[:80]!r} must be 1-63 lower-case letters, digits and dashes, "
            "starting and ending with a letter or digit",
            field="name",
        )


async def create_tenant(connection: Connection, name: str, *, actor: str) -> Tenant:
    """Needs a system-scope connection: no tenant exists yet to scope it to."""
    check_tenant_name(name)
    try:
        row = await connection.fetchrow("INSERT INTO tenants (name) VALUES ($1) RETURNING *", name)
    except asyncpg.UniqueViolationError:
        raise AlreadyExistsError(f"a tenant named {name!r} already exists") from None
    tenant = _tenant(row)
    await audit.record(
        connection,
        tenant.id,
        actor=actor,
        action="tenant.create",
        resource_type="tenant",
        resource_id=tenant.id,
        before=None,
        after={"id": str(tenant.id), "name": name},
    )
    return tenant


async def find_tenant(connection: Connection, name: str) -> Tenant:
    """By name; needs a system-scope connection (the CLI's `--tenant NAME`, a sign-in's tenant)."""
    row = await connection.fetchrow("SELECT * FROM tenants WHERE name = $1", name)
    if row is None:
        raise NotFoundError(f"no tenant named {name!r}")
    return _tenant(row)


async def get_tenant(connection: Connection, tenant_id: uuid.UUID) -> Tenant:
    row = await connection.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
    if row is None:
        raise NotFoundError(f"tenant {tenant_id} not found")
    return _tenant(row)


async def tenant_limits(connection: Connection, tenant_id: uuid.UUID) -> TenantLimits:
    """The tenant's own limits; none (every default) for a tenant that does not exist."""
    document = await connection.fetchval("SELECT limits FROM tenants WHERE id = $1", tenant_id)
    return _limits(document or {})


def check_limits(limits: TenantLimits) -> None:
    """InvalidArgumentError (field `limits.<name>`) for a limit out of its range."""
    for name, value in dataclasses.asdict(limits).items():
        if value is None:
            continue
        least, most = _LIMIT_RANGES[name]
        whole = name not in _FRACTIONAL_LIMITS
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or (whole and value != int(value))
            or not least <= value <= most
        ):
            kind = "a whole number" if whole else "a number"
            meaning = " (0: unlimited)" if least == 0 else ""
            raise InvalidArgumentError(
                f"limits.{name} must be {kind} from {least:g} to {most:g}{meaning}, or unset "
                f"for the server's default; not {value!r}",
                field=f"limits.{name}",
            )


async def update_tenant_limits(
    connection: Connection,
    tenant_id: uuid.UUID,
    limits: TenantLimits,
    *,
    only: Collection[str] | None = None,
    actor: str,
) -> Tenant:
    """Set the tenant's own limits: all of them (a limit None goes back to the default), or
    `only` those named, the others kept as they are (read under the row's lock, so two changes
    of different limits at once both hold)."""
    before = await connection.fetchrow("SELECT * FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
    if before is None:
        raise NotFoundError(f"tenant {tenant_id} not found")
    if only is not None:
        limits = dataclasses.replace(
            _limits(before["limits"]), **{name: getattr(limits, name) for name in only}
        )
    check_limits(limits)
    row = await connection.fetchrow(
        "UPDATE tenants SET limits = $2 WHERE id = $1 RETURNING *", tenant_id, _document(limits)
    )
    tenant = _tenant(row)
    await audit.record(
        connection,
        tenant_id,
        actor=actor,
        action="tenant.update_limits",
        resource_type="tenant",
        resource_id=tenant_id,
        before={"id": str(tenant_id), "limits": before["limits"]},
        after={"id": str(tenant_id), "limits": _document(tenant.limits)},
        details={"limits": _document(tenant.limits)},
    )
    return tenant


async def create_api_key(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    role: Role,
    description: str = "",
    expires_at: datetime | None = None,
    workflow_ids: Sequence[uuid.UUID] | None = None,
    actor: str,
) -> tuple[ApiKey, str]:
    """A new key: its record, and the key itself, which is shown once and never stored.

    `expires_at` must be in the future (None: never); `workflow_ids` restrict the key to those
    workflows of the tenant, which must exist (None or empty: every workflow)."""
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidArgumentError(
                "expires_at needs a time zone (UTC, for instance)", field="expires_at"
            )
        now = datetime.now(UTC)
        if expires_at <= now:
            raise InvalidArgumentError(
                f"expires_at must be in the future; {expires_at.isoformat()} is not "
                f"(it is now {now.isoformat(timespec='seconds')})",
                field="expires_at",
            )
    restriction = await _existing_workflows(connection, tenant_id, workflow_ids)
    return await _insert_key(
        connection,
        tenant_id,
        role=role,
        description=description,
        expires_at=expires_at,
        workflow_ids=restriction,
        rotated_from=None,
        actor=actor,
    )


async def find_api_key(connection: Connection, key: str) -> ApiKey | None:
    """The record of a key, whatever its state; None for one never issued. System scope."""
    if not key.startswith(KEY_PREFIX):
        return None
    row = await connection.fetchrow("SELECT * FROM api_keys WHERE key_hash = $1", hash_key(key))
    return None if row is None else _api_key(row)


def principal_of(key: ApiKey) -> Principal:
    """Who a call with `key` is: its tenant, role, workflows and expiry."""
    return Principal(
        tenant_id=key.tenant_id,
        role=key.role,
        api_key_id=key.id,
        workflow_ids=None if key.workflow_ids is None else frozenset(key.workflow_ids),
        expires_at=key.expires_at,
    )


async def list_api_keys(connection: Connection, tenant_id: uuid.UUID) -> list[ApiKey]:
    rows = await connection.fetch(
        "SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id", tenant_id
    )
    return [_api_key(row) for row in rows]


async def revoke_api_key(
    connection: Connection, tenant_id: uuid.UUID, key_id: uuid.UUID, *, actor: str
) -> ApiKey:
    """Revoke a key (at once: the next request with it is refused). Revoking twice is a no-op."""
    before = await _locked_key(connection, tenant_id, key_id)
    if before.revoked_at is not None:
        return before
    row = await connection.fetchrow(
        "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING *",
        tenant_id,
        key_id,
    )
    revoked = _api_key(row)
    await audit.record(
        connection,
        tenant_id,
        actor=actor,
        action="api_key.revoke",
        resource_type="api_key",
        resource_id=key_id,
        before=_key_state(before),
        after=_key_state(revoked),
    )
    return revoked


async def rotate_api_key(
    connection: Connection,
    tenant_id: uuid.UUID,
    key_id: uuid.UUID,
    *,
    grace: timedelta,
    actor: str,
) -> tuple[ApiKey, str, ApiKey]:
    """A new key with the old one's role, description and workflows; the old key now expires
    `grace` from now (0 to 30 days), or sooner if it already did. The new key, its secret,
    and the old key as it now is. A revoked key cannot be rotated (an expired one can)."""
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidArgumentError(
            f"grace_period must be from 0 to 30 days, not {grace}", field="grace_period"
        )
    old = await _locked_key(connection, tenant_id, key_id)
    if old.revoked_at is not None:
        raise FailedPreconditionError(
            f"API key {old.prefix}… was revoked at {old.revoked_at.isoformat()}: a revoked key "
            "cannot be rotated; create a new key instead",
            code="api_key.revoked",
        )
    new, secret = await _insert_key(
        connection,
        tenant_id,
        role=old.role,
        description=old.description,
        expires_at=None,
        workflow_ids=old.workflow_ids,
        rotated_from=old.id,
        actor=actor,
    )
    row = await connection.fetchrow(
        """
        UPDATE api_keys
        SET expires_at = least(coalesce(expires_at, 'infinity'::timestamptz), now() + $3::interval)
        WHERE tenant_id = $1 AND id = $2 RETURNING *
        """,
        tenant_id,
        key_id,
        grace,
    )
    expiring = _api_key(row)
    await audit.record(
        connection,
        tenant_id,
        actor=actor,
        action="api_key.rotate",
        resource_type="api_key",
        resource_id=key_id,
        before=_key_state(old),
        after=_key_state(expiring),
        details={"new_api_key_id": str(new.id), "grace_seconds": grace.total_seconds()},
    )
    return new, secret, expiring


async def touch_api_key(
    connection: Connection, tenant_id: uuid.UUID, key_id: uuid.UUID, *, every: timedelta
) -> None:
    """Note the key was used now, unless that was noted less than `every` ago (by any server)."""
    await connection.execute(
        """
        UPDATE api_keys SET last_used_at = now()
        WHERE tenant_id = $1 AND id = $2
          AND (last_used_at IS NULL OR last_used_at <= now() - $3::interval)
        """,
        tenant_id,
        key_id,
        every,
    )


async def _insert_key(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    role: Role,
    description: str,
    expires_at: datetime | None,
    workflow_ids: Sequence[uuid.UUID] | None,
    rotated_from: uuid.UUID | None,
    actor: str,
) -> tuple[ApiKey, str]:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = await connection.fetchrow(
        """
        INSERT INTO api_keys (tenant_id, key_hash, prefix, role, description, created_by,
                              expires_at, workflow_ids, rotated_from)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *
        """,
        tenant_id,
        hash_key(key),
        key[:_SHOWN_CHARACTERS],
        role.value,
        description,
        actor,
        expires_at,
        None if workflow_ids is None else list(workflow_ids),
        rotated_from,
    )
    api_key = _api_key(row)
    await audit.record(
        connection,
        tenant_id,
        actor=actor,
        action="api_key.create",
        resource_type="api_key",
        resource_id=api_key.id,
        before=None,
        after=_key_state(api_key),
        details=None if rotated_from is None else {"rotated_from": str(rotated_from)},
    )
    return api_key, key


async def _existing_workflows(
    connection: Connection, tenant_id: uuid.UUID, workflow_ids: Sequence[uuid.UUID] | None
) -> tuple[uuid.UUID, ...] | None:
    """`workflow_ids` without repeats, once each is known to be a live workflow of the tenant;
    None for none."""
    if not workflow_ids:
        return None
    wanted = tuple(dict.fromkeys(workflow_ids))
    found = {
        row["id"]
        for row in await connection.fetch(
            "SELECT id FROM workflows WHERE tenant_id = $1 AND id = ANY($2::uuid[]) "
            "AND deleted_at IS NULL",
            tenant_id,
            list(wanted),
        )
    }
    missing = [str(workflow_id) for workflow_id in wanted if workflow_id not in found]
    if missing:
        raise InvalidArgumentError(
            f"workflow_ids: no workflow {', '.join(missing)} in this tenant",
            field="workflow_ids",
        )
    return wanted


async def _locked_key(connection: Connection, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """The tenant's key, locked for the transaction; NotFoundError for another tenant's."""
    row = await connection.fetchrow(
        "SELECT * FROM api_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, key_id
    )
    if row is None:
        raise NotFoundError(f"API key {key_id} not found")
    return _api_key(row)


def _key_state(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "prefix": key.prefix,
        "role": key.role.value,
        "description": key.description,
        "revoked": key.revoked_at is not None,
        "expires_at": None if key.expires_at is None else key.expires_at.isoformat(),
        "workflow_ids": None if key.workflow_ids is None else [str(w) for w in key.workflow_ids],
    }


def _document(limits: TenantLimits) -> dict[str, float | int]:
    """The limits set, as stored: a limit left at the default is not written."""
    return {name: value for name, value in dataclasses.asdict(limits).items() if value is not None}


def _limits(document: dict[str, Any]) -> TenantLimits:
    values: dict[str, Any] = {}
    for name in _LIMIT_RANGES:
        value = document.get(name)
        if value is not None:
            values[name] = float(value) if name in _FRACTIONAL_LIMITS else int(value)
    return TenantLimits(**values)


def _tenant(row: Any) -> Tenant:
    return Tenant(
        id=row["id"], name=row["name"], created_at=row["created_at"], limits=_limits(row["limits"])
    )


def _api_key(row: Any) -> ApiKey:
    workflow_ids = row["workflow_ids"]
    return ApiKey(
        id=row["id"],
        tenant_id=row["tenant_id"],
        prefix=row["prefix"],
        role=Role(row["role"]),
        description=row["description"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        workflow_ids=None if workflow_ids is None else tuple(workflow_ids),
        rotated_from=row["rotated_from"],
    )
