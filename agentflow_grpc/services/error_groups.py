"""Error groups: every failed node attempt, failed run and internal error is an occurrence of
a group, one per cause (docs/observability.md).

Runs' failures are recorded with their events (services/error_events.py); this service reads
the groups, any role of the tenant (an internal error's stack: admins only, since it shows the
server's own files and lines), and records the internal errors of API calls (`record_internal`,
which the API's interceptor calls in the background).
"""

from __future__ import annotations

import dataclasses
import traceback
import uuid
from datetime import UTC, datetime

from agentflow_grpc.model.error_groups import ErrorGroup, ErrorKind, NewOccurrence
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import Principal, Role
from agentflow_grpc.storage import error_groups as store
from agentflow_grpc.storage.database import Database
from agentflow_grpc.storage.pagination import Page

CODE_LIMIT = 200  # characters of a `code` filter
INTERNAL_CODE = "internal"


class ErrorGroupService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def list(
        self,
        principal: Principal,
        *,
        page_size: int,
        page_token: str,
        last_seen_after: datetime | None = None,
        code: str | None = None,
    ) -> Page[ErrorGroup]:
        """The tenant's groups, the most recently seen first, without their occurrences."""
        if code is not None and (len(code) > CODE_LIMIT or not code.isprintable()):
            raise InvalidArgumentError(
                f"code must be an error code of at most {CODE_LIMIT} printable characters",
                field="code",
            )
        async with self._database.tenant(principal.tenant_id) as connection:
            page = await store.list_groups(
                connection,
                principal.tenant_id,
                size=page_size,
                token=page_token,
                last_seen_after=last_seen_after,
                code=code,
            )
        return dataclasses.replace(page, items=[shown_to(principal, g) for g in page.items])

    async def get(self, principal: Principal, fingerprint: str) -> ErrorGroup:
        """One group of the tenant, with its latest occurrences (NotFoundError otherwise)."""
        async with self._database.tenant(principal.tenant_id) as connection:
            group = await store.get_group(connection, principal.tenant_id, fingerprint)
        return shown_to(principal, group)

    async def record_internal(self, tenant_id: uuid.UUID, method: str, error: Exception) -> None:
        """An API call of `tenant_id` to `method` failed with `error`, unexpectedly: an
        `internal` occurrence, with the exception's type, message and stack."""
        occurrence = NewOccurrence(
            kind=ErrorKind.INTERNAL,
            code=INTERNAL_CODE,
            message=f"{type(error).__name__}: {error}",
            occurred_at=datetime.now(UTC),
            method=method,
            stack="".join(traceback.format_exception(error)),
        )
        async with self._database.tenant(tenant_id) as connection:
            await store.record(connection, tenant_id, [occurrence])


def shown_to(principal: Principal, group: ErrorGroup) -> ErrorGroup:
    """The group as `principal` may see it: without the stack unless an admin."""
    if principal.role is Role.ADMIN or not group.stack:
        return group
    return dataclasses.replace(group, stack="")
