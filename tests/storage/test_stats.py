"""storage/stats.py on real PostgreSQL, with rows placed at exact times (written as the owner):
bucket edges, the window's ends, percentiles of known durations, tokens by model summed from
model_usage, the latest failures, and another tenant's rows never counted."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from agentflow_grpc.model.records import Tenant
from agentflow_grpc.model.stats import FailedRun, ModelTokens, StatsBucket, StatsWindow
from agentflow_grpc.storage import stats
from agentflow_grpc.storage.database import Database

START = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
WINDOW = StatsWindow(START, timedelta(minutes=1), 60)  # 17:00 to 18:00
US = timedelta(microseconds=1)


async def put(
    owner: asyncpg.Connection,
    tenant: Tenant,
    created_at: datetime,
    status: str = "completed",
    *,
    duration_ms: float | None = 10.0,
    models: list[dict[str, Any]] | None = None,
    error: dict[str, str] | None = None,
) -> uuid.UUID:
    execution_id = uuid.uuid4()
    await owner.execute(
        """
        INSERT INTO executions (id, tenant_id, inline_spec, spec_hash, status, inputs, created_by,
                                created_at, duration_ms, model_usage, error)
        VALUES ($1, $2, '{}', 'hash', $3, '{}', 'test', $4, $5, $6::jsonb, $7::jsonb)
        """,
        execution_id,
        tenant.id,
        status,
        created_at,
        duration_ms if status in ("completed", "failed", "cancelled") else None,
        None if models is None else json.dumps(models),
        None if error is None else json.dumps(error),
    )
    return execution_id


async def count(database: Database, tenant: Tenant, window: StatsWindow = WINDOW) -> Any:
    async with database.tenant(tenant.id) as connection:
        return await stats.count_window(connection, tenant.id, window)


def usage(provider: str, model: str, calls: int, i: int, o: int, c: int = 0) -> dict[str, Any]:
    return {
        "provider": provider,
        "model": model,
        "calls": calls,
        "input_tokens": i,
        "output_tokens": o,
        "cached_tokens": c,
    }


async def test_buckets_hold_their_start_and_not_their_end(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant
) -> None:
    await put(owner, tenant_a, START - US)  # before the window
    await put(owner, tenant_a, START)  # the first bucket's first moment
    await put(owner, tenant_a, START + timedelta(minutes=1) - US, "failed")  # still the first
    await put(owner, tenant_a, START + timedelta(minutes=1), "cancelled")  # the second
    await put(owner, tenant_a, START + timedelta(minutes=30, seconds=5), "running")
    await put(owner, tenant_a, START + timedelta(minutes=30, seconds=6), "pending")
    await put(owner, tenant_a, WINDOW.end - US)  # the last bucket's last moment
    await put(owner, tenant_a, WINDOW.end)  # after the window

    counted = await count(database, tenant_a)

    assert len(counted.buckets) == 60
    assert [b.start for b in counted.buckets] == [START + i * WINDOW.width for i in range(60)]
    nonempty = {i: b for i, b in enumerate(counted.buckets) if b != StatsBucket(b.start)}
    assert nonempty == {
        0: StatsBucket(START, completed=1, failed=1),
        1: StatsBucket(START + WINDOW.width, cancelled=1),
        30: StatsBucket(START + 30 * WINDOW.width, active=2),
        59: StatsBucket(START + 59 * WINDOW.width, completed=1),
    }
    totals = counted.totals
    assert (totals.total, totals.completed, totals.failed, totals.cancelled, totals.active) == (
        6,
        2,
        1,
        1,
        2,
    )


async def test_odd_bucket_widths_place_runs_exactly(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant
) -> None:
    window = StatsWindow(START, timedelta(microseconds=514_285_715), 7)  # an hour in 7
    for index in range(7):
        await put(owner, tenant_a, window.bucket_start(index))
        await put(owner, tenant_a, window.bucket_start(index + 1) - US, "failed")

    counted = await count(database, tenant_a, window)

    assert [(b.completed, b.failed) for b in counted.buckets] == [(1, 1)] * 7


async def test_percentiles_are_over_finished_runs_with_a_duration(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant
) -> None:
    minute = START + timedelta(minutes=5)
    for status, duration in (("completed", 10.0), ("failed", 20.0), ("cancelled", 30.0)):
        await put(owner, tenant_a, minute, status, duration_ms=duration)
    await put(owner, tenant_a, minute, "completed", duration_ms=40.0)
    await put(owner, tenant_a, minute, "cancelled", duration_ms=None)  # cancelled while queued
    await put(owner, tenant_a, minute, "running")  # not finished: no duration counted

    totals = (await count(database, tenant_a)).totals

    # percentile_cont over [10, 20, 30, 40]: interpolated at (n - 1) * p.
    assert totals.p50_duration_ms == pytest.approx(25.0)
    assert totals.p95_duration_ms == pytest.approx(38.5)
    assert totals.p99_duration_ms == pytest.approx(39.7)
    assert totals.error_rate == 1 / 5


async def test_no_runs_no_percentiles(database: Database, tenant_a: Tenant) -> None:
    counted = await count(database, tenant_a)
    assert counted.totals.p50_duration_ms is None
    assert counted.totals.total == 0
    assert counted.models == counted.recent_failures == ()


async def test_tokens_by_model_are_summed_most_first(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant
) -> None:
    minute = START + timedelta(minutes=5)
    gpt = ("openai", "gpt-4o-mini")
    claude = ("anthropic", "claude-3-5-haiku-latest")
    await put(owner, tenant_a, minute, models=[usage(*gpt, 2, 100, 20), usage(*claude, 1, 10, 5)])
    await put(owner, tenant_a, minute, "failed", models=[usage(*gpt, 1, 50, 10, c=7)])
    await put(owner, tenant_a, minute, models=[usage(*claude, 3, 400, 90)])
    await put(owner, tenant_a, minute, models=[])  # a run without model calls
    await put(owner, tenant_a, minute)  # a run recorded before model_usage (NULL)
    await put(owner, tenant_a, WINDOW.end, models=[usage(*gpt, 9, 999, 999)])  # out of window

    counted = await count(database, tenant_a)

    assert counted.models == (
        ModelTokens(*claude, calls=4, input_tokens=410, output_tokens=95, cached_tokens=0),
        ModelTokens(*gpt, calls=3, input_tokens=150, output_tokens=30, cached_tokens=7),
    )


async def test_the_ten_latest_failures_newest_first(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant
) -> None:
    failed = []
    for minute in range(12):
        created = START + timedelta(minutes=minute)
        error = {"code": "provider.rejected", "message": f"no {minute}"}
        failed.append(
            (created, await put(owner, tenant_a, created, "failed", duration_ms=5, error=error))
        )
    await put(owner, tenant_a, START + timedelta(minutes=50), "completed")

    counted = await count(database, tenant_a)

    expected = [
        FailedRun(execution_id, None, "provider.rejected", f"no {minute}", created, 5.0)
        for minute, (created, execution_id) in reversed(list(enumerate(failed)))
    ][:10]
    assert list(counted.recent_failures) == expected


async def test_another_tenants_rows_are_never_counted(
    database: Database, owner: asyncpg.Connection, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    minute = START + timedelta(minutes=5)
    await put(owner, tenant_a, minute)
    theirs = [usage("openai", "gpt-4o", 1, 5, 5)]
    await put(owner, tenant_b, minute, models=theirs)
    await put(owner, tenant_b, minute, "failed", error={"code": "x.y", "message": "theirs"})

    ours = await count(database, tenant_a)
    assert (ours.totals.total, ours.totals.failed) == (1, 0)
    assert ours.models == ours.recent_failures == ()
    # Even asked for tenant b's id inside tenant a's transaction, row-level security hides them.
    async with database.tenant(tenant_a.id) as connection:
        smuggled = await stats.count_window(connection, tenant_b.id, WINDOW)
    assert smuggled.totals.total == 0
    assert (await count(database, tenant_b)).totals.total == 2
