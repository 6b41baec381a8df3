"""StatsService on real PostgreSQL: the queue's depth never fails the stats (an error or no
answer within a second is -1), the dependencies are the health checks', and an internal error
group's stack is shown to admins only, as ListErrorGroups does. (Counting itself:
tests/storage/test_stats.py; end to end through the API: tests/api/test_stats_api.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agentflow_grpc.model.error_groups import ErrorKind, NewOccurrence
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import Principal, Role, Tenant
from agentflow_grpc.services.health import HealthService
from agentflow_grpc.services.stats import QUEUE_TIMEOUT, QueueDepth, StatsService
from agentflow_grpc.storage import error_groups
from agentflow_grpc.storage.database import Database

STACK = 'Traceback (most recent call last):\n  File "agentflow_grpc/x.py", line 1\nRuntimeError'


def principal(tenant: Tenant, role: Role = Role.VIEWER) -> Principal:
    return Principal(tenant.id, role, uuid.uuid4())


def service(database: Database, depth: QueueDepth) -> StatsService:
    async def down() -> float:
        raise ConnectionRefusedError("redis is down")

    health = HealthService({"database": database.ping, "redis": down})
    return StatsService(database, health=health, queue_depth=depth)


async def three() -> int:
    return 3


async def broken() -> int:
    raise RuntimeError("the job queue (Redis) is unavailable")


async def silent() -> int:
    await asyncio.Event().wait()
    return 0


async def test_the_queue_depth_and_the_dependencies(database: Database, tenant_a: Tenant) -> None:
    stats = await service(database, three).get(principal(tenant_a))
    assert stats.queue_depth == 3
    database_health, redis_health = stats.dependencies
    assert (database_health.name, database_health.status) == ("database", "SERVING")
    assert (redis_health.name, redis_health.status) == ("redis", "NOT_SERVING")
    assert redis_health.message == "ConnectionRefusedError: redis is down"


async def test_a_queue_that_fails_or_does_not_answer_is_minus_one(
    database: Database, tenant_a: Tenant
) -> None:
    assert (await service(database, broken).get(principal(tenant_a))).queue_depth == -1
    started = time.monotonic()
    assert (await service(database, silent).get(principal(tenant_a))).queue_depth == -1
    assert time.monotonic() - started < QUEUE_TIMEOUT + 5  # bounded, whatever the queue does


async def test_an_internal_errors_stack_is_shown_to_admins_only(
    database: Database, tenant_a: Tenant
) -> None:
    occurrence = NewOccurrence(
        kind=ErrorKind.INTERNAL,
        code="internal",
        message="RuntimeError: boom",
        occurred_at=datetime.now(UTC),
        method="/agentflow.v1.WorkflowService/GetWorkflow",
        stack=STACK,
    )
    async with database.tenant(tenant_a.id) as connection:
        await error_groups.record(connection, tenant_a.id, [occurrence])
    stats = service(database, three)

    for role in Role:
        (group,) = (await stats.get(principal(tenant_a, role))).top_error_groups
        assert (group.code, group.count) == ("internal", 1)
        assert group.stack == (STACK if role is Role.ADMIN else "")


async def test_a_bad_window_is_refused_before_any_query(database: Database) -> None:
    nobody = Principal(uuid.uuid4(), Role.VIEWER, uuid.uuid4())
    with pytest.raises(InvalidArgumentError) as refused:
        await service(database, three).get(nobody, window=timedelta(days=8))
    assert refused.value.field == "window"
    with pytest.raises(InvalidArgumentError) as refused:
        await service(database, three).get(nobody, bucket_count=1000)
    assert refused.value.field == "bucket_count"
