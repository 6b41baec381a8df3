"""Redis down: a streamed run still runs on the replica that takes it, health says Redis is
down, background starts are refused with UNAVAILABLE, and the stats dashboard still answers
(queue depth -1) — nothing crashes, nothing is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import Client, client_of, echo_spec, rpc_error, struct
from support.network import closed_port

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import (
    health_pb2,
    observability_pb2,
    observability_pb2_grpc,
)


@pytest.fixture
async def without_redis(migrated_dsn: str, owner: object) -> AsyncIterator[RunningApi]:
    settings = api_settings(migrated_dsn, f"redis://127.0.0.1:{closed_port()}/0")
    async with running_api(settings) as api:
        yield api


@pytest.fixture
async def client(without_redis: RunningApi) -> AsyncIterator[Client]:
    async with without_redis.channel() as channel:
        yield client_of(channel)


async def test_a_streamed_run_still_runs_and_is_recorded(
    client: Client, without_redis: RunningApi
) -> None:
    request = ex.ExecuteWorkflowRequest(spec=struct(echo_spec()), inputs=struct({"n": 7}))
    events = [
        event
        async for event in client.executions.ExecuteWorkflow(
            request, metadata=without_redis.metadata()
        )
    ]
    assert events[-1].type == "execution_completed"
    assert events[-1].data["outputs"]["n"] == 7
    stored = await client.executions.GetExecution(
        ex.GetExecutionRequest(name=events[0].execution), metadata=without_redis.metadata()
    )
    assert stored.state == ex.Execution.State.STATE_COMPLETED
    assert stored.last_sequence == len(events)


async def test_a_background_start_is_unavailable_and_leaves_nothing(
    client: Client, without_redis: RunningApi
) -> None:
    error = await rpc_error(
        client.executions.StartExecution(
            ex.StartExecutionRequest(spec=struct(echo_spec())), metadata=without_redis.metadata()
        )
    )
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "Redis" in (error.details() or "")
    listed = await client.executions.ListExecutions(
        ex.ListExecutionsRequest(), metadata=without_redis.metadata()
    )
    assert list(listed.executions) == []  # refused before anything was recorded


async def test_health_reports_redis_down(client: Client) -> None:
    health = await client.health.GetHealth(health_pb2.GetHealthRequest())
    by_name = {d.name: d for d in health.dependencies}
    assert by_name["redis"].status == "NOT_SERVING"
    assert by_name["redis"].message
    assert by_name["database"].status == "SERVING"
    assert health.status == "NOT_SERVING"


async def test_stats_still_answer_with_the_queue_unknown_and_redis_not_serving(
    client: Client, without_redis: RunningApi
) -> None:
    request = ex.ExecuteWorkflowRequest(spec=struct(echo_spec()), inputs=struct({"n": 1}))
    [*_, end] = [
        event
        async for event in client.executions.ExecuteWorkflow(
            request, metadata=without_redis.metadata()
        )
    ]
    assert end.type == "execution_completed"

    stats = await observability_pb2_grpc.ObservabilityServiceStub(client.channel).GetStats(
        observability_pb2.GetStatsRequest(), metadata=without_redis.metadata()
    )

    assert stats.queue_depth == -1
    by_name = {d.name: d for d in stats.dependencies}
    assert by_name["redis"].status == "NOT_SERVING"
    assert by_name["redis"].message
    assert by_name["database"].status == "SERVING"
    assert (stats.total_executions, stats.completed_executions) == (1, 1)
