"""Tenants and their API keys.

An API key is `af_` and 43 random URL-safe characters (256 bits). Only its SHA-256 is stored:
a key with that much entropy needs no slow hash, and lookup by hash is one index probe. The
first characters are kept as `prefix`, so people can tell their keys apart in a listing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from typing import Any

import asyncpg

from agentflow_grpc.model.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from agentflow_grpc.model.records import ApiKey, Principal, Role, Tenant
from agentflow_grpc.storage import audit
from agentflow_grpc.storage.database import Connection

KEY_PREFIX = "af_"
_SHOWN_CHARACTERS = 12
_TENANT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


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
    """By name; needs a system-scope connection (the CLI's `--tenant NAME`)."""
    row = await connection.fetchrow("SELECT * FROM tenants WHERE name = $1", name)
    if row is None:
        raise NotFoundError(f"no tenant named {name!r}")
    return _tenant(row)


async def create_api_key(
    connection: Connection,
    tenant_id: uuid.UUID,
    *,
    role: Role,
    description: str = "",
    actor: str,
) -> tuple[ApiKey, str]:
    """A new key: its record, and the key itself, which is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = await connection.fetchrow(
        """
        INSERT INTO api_keys (tenant_id, key_hash, prefix, role, description, created_by)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING *
        """,
        tenant_id,
        hash_key(key),
        key[:_SHOWN_CHARACTERS],
        role.value,
        description,
        actor,
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
    )
    return api_key, key


async def authenticate(connection: Connection, key: str) -> Principal | None:
    """The principal of a live key; None for an unknown or revoked one. System scope."""
    if not key.startswith(KEY_PREFIX):
        return None
    row = await connection.fetchrow(
        "SELECT id, tenant_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key),
    )
    if row is None:
        return None
    return Principal(tenant_id=row["tenant_id"], role=Role(row["role"]), api_key_id=row["id"])


async def list_api_keys(connection: Connection, tenant_id: uuid.UUID) -> list[ApiKey]:
    rows = await connection.fetch(
        "SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id", tenant_id
    )
    return [_api_key(row) for row in rows]


async def revoke_api_key(
    connection: Connection, tenant_id: uuid.UUID, key_id: uuid.UUID, *, actor: str
) -> ApiKey:
    """Revoke a key (at once: the next request with it is refused). Revoking twice is a no-op."""
    before = await connection.fetchrow(
        "SELECT * FROM api_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, key_id
    )
    if before is None:
        raise NotFoundError(f"API key {key_id} not found")
    if before["revoked_at"] is not None:
        return _api_key(before)
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
        before=_key_state(_api_key(before)),
        after=_key_state(revoked),
    )
    return revoked


def _key_state(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "prefix": key.prefix,
        "role": key.role.value,
        "description": key.description,
        "revoked": key.revoked_at is not None,
    }


def _tenant(row: Any) -> Tenant:
    return Tenant(id=row["id"], name=row["name"], created_at=row["created_at"])


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant_id=row["tenant_id"],
        prefix=row["prefix"],
        role=Role(row["role"]),
        description=row["description"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
    )
