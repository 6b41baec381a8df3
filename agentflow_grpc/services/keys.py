"""Key rotation: move every sealed secret to the newest key, while the service keeps running."""

from __future__ import annotations

from dataclasses import dataclass

from agentflow_grpc.storage import source_secrets
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database


@dataclass(frozen=True, slots=True)
class RotationReport:
    resealed: int
    by_key_before: dict[str, int]
    by_key_after: dict[str, int]


async def rotate_secrets(
    database: Database, keyring: Keyring, *, batch: int = 100
) -> RotationReport:
    """Re-seal, `batch` rows per short transaction, every secret not under the newest key.

    Readers keep working throughout: the old keys stay in the ring until this has finished,
    and each row switches keys atomically. Run it again after a failure; it picks up the rest.
    """
    async with database.system() as connection:
        before = await source_secrets.count_by_key(connection)
    resealed = 0
    while True:
        async with database.system() as connection:
            done = await source_secrets.reseal_stale(connection, keyring, limit=batch)
        resealed += done
        if done == 0:
            break
    async with database.system() as connection:
        after = await source_secrets.count_by_key(connection)
    return RotationReport(resealed, before, after)
