"""GetStats over the real gRPC API and PostgreSQL: runs are made through the API (streamed and
background, on the fake provider), and every number is held to what the test computes itself
from the stored rows: buckets, totals, error rate, duration percentiles, tokens and cost by
model, the latest failures, the top error groups; another tenant's runs are never counted; bad
windows and bucket counts are refused naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from support.api_fixtures import RunningApi
from support.api_helpers import Client, Metadata, assert_invalid, echo_spec, router_spec, rpc_error
from support.runs import answer_spec
from support.stats import (
    GPT_4O_MINI_PRICE,
    PRICED_MODEL,
    REFUSE,
    UNPRICED_MODEL,
    cancel,
    execute,
    execution_id,
    expected_buckets,
    get_stats,
    percentile_cont,
    prepare,
    proto_buckets,
    script_provider,
    start_slow,
    stored_runs,
)

from agentflow_grpc._gen.agentflow.v1 import observability_pb2
from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

pytestmark = pytest.mark.slow

HOUR = timedelta(hours=1)


@pytest.fixture
async def runs(client: Client, md: Metadata, provider: FakeProviderServer) -> None:
    """Tenant acme's runs: 4 completed (3 on gpt-4o-mini, 1 on fake-model), 2 failed (one of a
    stored workflow, one of an inline spec), 1 cancelled and 1 still running."""
    script_provider(provider)
    workflows = await prepare(client, md, provider)
    for question in ("one", "two", "three and a longer question"):
        assert await execute(client, md, question, workflow=workflows.priced) == (
            "execution_completed"
        )
    assert await execute(client, md, "four", workflow=workflows.unpriced) == "execution_completed"
    refused = f"{REFUSE} please"
    assert await execute(client, md, refused, workflow=workflows.priced) == "execution_failed"
    inline = answer_spec("inline-answer")
    assert await execute(client, md, refused, spec=inline) == "execution_failed"
    await cancel(client, md, await start_slow(client, md, workflows.priced))
    await start_slow(client, md, workflows.priced)  # left running


def start_of(stats: observability_pb2.Stats) -> datetime:
    return stats.start_time.ToDatetime(tzinfo=UTC)


@pytest.mark.usefixtures("runs")
async def test_buckets_totals_rate_and_percentiles_match_the_stored_runs(
    client: Client, md: Metadata, owner: asyncpg.Connection
) -> None:
    stats = await get_stats(client, md, window=HOUR, bucket_count=60)
    rows = await stored_runs(owner, "acme")
    assert len(rows) == 8

    start, width = start_of(stats), stats.bucket_width.ToTimedelta()
    assert width == timedelta(minutes=1)
    assert start.timestamp() % 60 == 0  # buckets are whole minutes
    assert stats.end_time.ToDatetime(tzinfo=UTC) - start == 60 * width
    assert [b.start_time.ToDatetime(tzinfo=UTC) for b in stats.buckets] == [
        start + i * width for i in range(60)
    ]
    assert proto_buckets(stats) == expected_buckets(rows, start, width, 60)
    assert sum(sum(bucket.values()) for bucket in proto_buckets(stats)) == 8

    assert (
        stats.total_executions,
        stats.completed_executions,
        stats.failed_executions,
        stats.cancelled_executions,
        stats.active_executions,
    ) == (8, 4, 2, 1, 1)
    assert stats.error_rate == pytest.approx(2 / 7)
    durations = [
        row["duration_ms"]
        for row in rows
        if row["status"] in ("completed", "failed", "cancelled") and row["duration_ms"] is not None
    ]
    assert len(durations) == 7
    for fraction, value in ((0.5, stats.p50_duration_ms), (0.95, stats.p95_duration_ms)):
        assert value == pytest.approx(percentile_cont(durations, fraction))
    assert stats.p99_duration_ms == pytest.approx(percentile_cont(durations, 0.99))
    assert stats.p50_duration_ms <= stats.p95_duration_ms <= stats.p99_duration_ms


@pytest.mark.usefixtures("runs")
async def test_tokens_and_cost_by_model(
    client: Client, md: Metadata, owner: asyncpg.Connection
) -> None:
    stats = await get_stats(client, md, window=HOUR)
    rows = await stored_runs(owner, "acme")

    by_model = {(m.provider, m.model): m for m in stats.models}
    assert set(by_model) == {("openai", PRICED_MODEL), ("openai", UNPRICED_MODEL)}
    for model, calls in ((PRICED_MODEL, 3), (UNPRICED_MODEL, 1)):
        usage = [
            item for row in rows for item in row["model_usage"] or [] if item["model"] == model
        ]
        usage_of = by_model["openai", model]
        assert usage_of.calls == calls == len(usage)
        assert usage_of.input_tokens == sum(item["input_tokens"] for item in usage) > 0
        assert usage_of.output_tokens == sum(item["output_tokens"] for item in usage) > 0
        assert usage_of.cached_tokens == 0
    # Each run's model_usage adds up to its own token counts.
    for row in rows:
        spent = sum(item["input_tokens"] for item in row["model_usage"] or [])
        assert spent == row["prompt_tokens"]

    priced, unpriced = by_model["openai", PRICED_MODEL], by_model["openai", UNPRICED_MODEL]
    expected_cost = (
        priced.input_tokens * GPT_4O_MINI_PRICE[0] + priced.output_tokens * GPT_4O_MINI_PRICE[1]
    )
    assert priced.price_known
    assert priced.estimated_cost_usd == pytest.approx(expected_cost, rel=1e-9)
    assert (unpriced.price_known, unpriced.estimated_cost_usd) == (False, 0.0)
    assert stats.estimated_cost_usd == pytest.approx(expected_cost, rel=1e-9)
    # Most tokens first: three runs on gpt-4o-mini, one on fake-model.
    assert [m.model for m in stats.models] == [PRICED_MODEL, UNPRICED_MODEL]


@pytest.mark.usefixtures("runs")
async def test_recent_failures_and_top_error_groups(
    client: Client, md: Metadata, owner: asyncpg.Connection
) -> None:
    stats = await get_stats(client, md, window=HOUR)
    rows = await stored_runs(owner, "acme")
    failed = sorted(
        (row for row in rows if row["status"] == "failed"),
        key=lambda row: (row["created_at"], row["id"]),
        reverse=True,
    )

    assert [execution_id(f.name) for f in stats.recent_failures] == [row["id"] for row in failed]
    for summary, row in zip(stats.recent_failures, failed, strict=True):
        assert summary.error_code == row["error"]["code"] == "provider.rejected"
        assert "refuses this prompt" in summary.error_message
        assert summary.create_time.ToDatetime(tzinfo=UTC) == row["created_at"]
        assert summary.duration_ms == pytest.approx(row["duration_ms"])
        expected_workflow = "" if row["workflow_id"] is None else f"workflows/{row['workflow_id']}"
        assert summary.workflow == expected_workflow
    assert sorted(bool(f.workflow) for f in stats.recent_failures) == [False, True]

    (group,) = stats.top_error_groups  # both runs failed the same way
    assert (group.code, group.node_type) == ("provider.rejected", "llm")
    assert group.name.startswith("errorGroups/")
    assert (group.count, group.failed_execution_count) == (2, 2)
    assert list(group.occurrences) == []


@pytest.mark.usefixtures("runs")
async def test_only_runs_created_in_the_window_count(
    client: Client, md: Metadata, owner: asyncpg.Connection
) -> None:
    rows = await stored_runs(owner, "acme")
    old = next(row for row in rows if row["status"] == "completed")
    await owner.execute(
        "UPDATE executions SET created_at = created_at - interval '3 hours' WHERE id = $1",
        old["id"],
    )

    hour = await get_stats(client, md, window=HOUR)
    day = await get_stats(client, md, window=timedelta(days=1), bucket_count=96)

    assert (hour.total_executions, hour.completed_executions) == (7, 3)
    assert (day.total_executions, day.completed_executions) == (8, 4)
    rows = await stored_runs(owner, "acme")
    width = day.bucket_width.ToTimedelta()
    assert width == timedelta(minutes=15)
    assert proto_buckets(day) == expected_buckets(rows, start_of(day), width, 96)
    assert sum(b.completed for b in day.buckets[:-2]) >= 1  # the old run, hours back


@pytest.mark.usefixtures("runs")
async def test_another_tenants_runs_are_never_counted(
    api: RunningApi, client: Client, md: Metadata, owner: asyncpg.Connection
) -> None:
    globex: Metadata = (("x-api-key", api.other_tenant_key),)
    for n in (1, 2):
        completed = await execute(client, globex, None, spec=echo_spec(), inputs={"n": n})
        assert completed == "execution_completed"
    failed = await execute(client, globex, None, spec=router_spec(), inputs={"n": 2})
    assert failed == "execution_failed"  # its http node may not reach example.invalid

    ours = await get_stats(client, md, window=HOUR)
    theirs = await get_stats(client, globex, window=HOUR)

    assert ours.total_executions == len(await stored_runs(owner, "acme")) == 8
    assert (ours.completed_executions, ours.failed_executions) == (4, 2)
    assert (theirs.total_executions, theirs.completed_executions) == (3, 2)
    assert theirs.failed_executions == 1
    assert list(theirs.models) == []
    assert theirs.estimated_cost_usd == 0
    their_ids = {row["id"] for row in await stored_runs(owner, "globex")}
    assert {execution_id(f.name) for f in theirs.recent_failures} <= their_ids
    assert not {execution_id(f.name) for f in ours.recent_failures} & their_ids
    assert {g.code for g in theirs.top_error_groups}.isdisjoint({"provider.rejected"})
    assert all(g.code == "provider.rejected" for g in ours.top_error_groups)


async def test_defaults_and_any_role(api: RunningApi, client: Client) -> None:
    for role in Role:
        stats = await get_stats(client, api.metadata(role))
        assert len(stats.buckets) == 60
        assert stats.bucket_width.ToTimedelta() == timedelta(minutes=1)
        assert stats.total_executions == 0
        assert (stats.error_rate, stats.p50_duration_ms, stats.estimated_cost_usd) == (0, 0, 0)
        assert {d.name: d.status for d in stats.dependencies} == {
            "database": "SERVING",
            "redis": "SERVING",
        }
        assert stats.queue_depth == 0
    widest = await get_stats(client, api.metadata(), window=timedelta(days=7), bucket_count=240)
    assert len(widest.buckets) == 240
    assert widest.bucket_width.ToTimedelta() == timedelta(minutes=42)


@pytest.mark.parametrize(
    ("window", "bucket_count", "field"),
    [
        (timedelta(0), 0, "window"),
        (timedelta(seconds=-1), 0, "window"),
        (timedelta(days=7, seconds=1), 0, "window"),
        (None, 241, "bucket_count"),
        (None, -1, "bucket_count"),
    ],
)
async def test_bad_windows_and_bucket_counts_are_refused(
    client: Client, md: Metadata, window: timedelta | None, bucket_count: int, field: str
) -> None:
    error = await rpc_error(get_stats(client, md, window=window, bucket_count=bucket_count))
    assert_invalid(error, field)
    assert field in (error.details() or "")


async def test_a_call_without_a_key_is_refused(client: Client) -> None:
    error = await rpc_error(get_stats(client, ()))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
