"""Sealed source secrets: bound to their tenant and source, opened for runs, re-sealed when
the keyring gains a newer key.

Each sealed blob is bound to its tenant and source id (`secrets_context`), so a blob copied to
another row does not open. `reseal_stale()` moves secrets sealed under an older key to the newest
one, a few rows per transaction, while the service runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from agentflow_grpc.storage import audit
from agentflow_grpc.storage.crypto import Keyring, SealedSecrets
from agentflow_grpc.storage.database import Connection


def secrets_context(tenant_id: uuid.UUID, source_id: uuid.UUID) -> bytes:
    return f"agentflow/source/{tenant_id}/{source_id}".encode()


def seal(
    keyring: Keyring, tenant_id: uuid.UUID, source_id: uuid.UUID, secrets: Mapping[str, str]
) -> SealedSecrets | None:
    if not secrets:
        return None
    return keyring.seal(secrets, context=secrets_context(tenant_id, source_id))


def open_sealed(keyring: Keyring, row: Any) -> dict[str, str]:
    if row["secret_blob"] is None:
        return {}
    sealed = SealedSecrets(key_id=row["secret_key_id"], blob=row["secret_blob"])
    return keyring.open(sealed, context=secrets_context(row["tenant_id"], row["id"]))


async def reseal_stale(connection: Connection, keyring: Keyring, *, limit: int = 100) -> int:
    """Re-seal up to `limit` secrets not under the newest key, across tenants (system scope).

    Rows are locked one transaction at a time; a source being edited meanwhile waits, then
    is skipped here if its edit already sealed it under the newest key. Returns how many rows
    were re-sealed (0: none is left).
    """
    rows = await connection.fetch(
        """
        SELECT * FROM sources
        WHERE secret_key_id IS NOT NULL AND secret_key_id <> $1
        ORDER BY id LIMIT $2 FOR UPDATE
        """,
        keyring.newest_key_id,
        limit,
    )
    for row in rows:
        secrets = open_sealed(keyring, row)
        sealed = seal(keyring, row["tenant_id"], row["id"], secrets)
        assert sealed is not None  # a row with a key id has secrets
        await connection.execute(
            "UPDATE sources SET secret_key_id = $2, secret_blob = $3 WHERE id = $1",
            row["id"],
            sealed.key_id,
            sealed.blob,
        )
        await audit.record(
            connection,
            row["tenant_id"],
            actor="operator:rotate-keys",
            action="source.reseal",
            resource_type="source",
            resource_id=row["id"],
            before=audit_state(row),
            after={**audit_state(row), "secret_key_id": sealed.key_id},
            details={"from_key": row["secret_key_id"], "to_key": sealed.key_id},
        )
    return len(rows)


async def count_by_key(connection: Connection) -> dict[str, int]:
    """How many sources each key seals (system scope): what rotation still has to do."""
    rows = await connection.fetch(
        "SELECT secret_key_id, count(*) AS n FROM sources WHERE secret_key_id IS NOT NULL "
        "GROUP BY secret_key_id"
    )
    return {row["secret_key_id"]: row["n"] for row in rows}


def audit_state(row: Any) -> dict[str, Any]:
    """The public state, for the audit hashes: the blob's digest stands in for the secrets."""
    return {
        "name": row["name"],
        "type": row["type"],
        "description": row["description"],
        "config": row["config"],
        "secret_names": list(row["secret_names"]),
        "secret_key_id": row["secret_key_id"],
        "secrets": audit.state_hash({"blob": row["secret_blob"].hex()})
        if row["secret_blob"] is not None
        else None,
        "deleted": row["deleted_at"] is not None,
    }
