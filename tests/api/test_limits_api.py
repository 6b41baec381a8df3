"""Limits through a real server and the real Valkey: requests per second per tenant and per key
(RESOURCE_EXHAUSTED with the reason and a RetryInfo carrying the real wait), health exempt, a
dead Redis failing open, and a source's `config.limits` holding its provider calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import (
    Client,
    assert_well_formed,
    client_of,
    error_info,
    rich_status,
    rpc_error,
    stream_error,
    struct,
)
from support.limits import SLOW_RATE
from support.network import closed_port
from support.provider import chat_requests
from support.runs import answer_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import health_pb2 as hl
from agentflow_grpc._gen.agentflow.v1 import source_pb2 as sr
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    for detail in rich_status(error).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    raise AssertionError("no RetryInfo in the status")


def list_workflows(client: Client, metadata: Any) -> Any:
    return client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=metadata)


@pytest.fixture
async def tenant_limited(
    migrated_dsn: str, redis_url: str, owner: object
) -> AsyncIterator[tuple[RunningApi, Client]]:
    """A server letting each tenant make 3 calls (no refill to speak of)."""
    settings = api_settings(
        migrated_dsn, redis_url, tenant_requests_per_second=SLOW_RATE, tenant_request_burst=3
    )
    async with running_api(settings) as api, api.channel() as channel:
        yield api, client_of(channel)


async def test_a_tenant_over_its_burst_is_refused_with_retry_info(
    tenant_limited: tuple[RunningApi, Client],
) -> None:
    api, client = tenant_limited
    for role in (Role.ADMIN, Role.VIEWER, Role.ADMIN):  # the tenant's keys share its rate
        await list_workflows(client, api.metadata(role))
    error = await rpc_error(list_workflows(client, api.metadata(Role.VIEWER)))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(error)
    assert (info.reason, info.domain) == ("rate_limited.tenant", "agentflow.dev")
    assert 900 < retry_delay(error) <= 1000  # the next token, at 0.001 a second
    assert "too many requests for the tenant" in (error.details() or "")
    # Another tenant is not affected.
    other = (("x-api-key", api.other_tenant_key),)
    for _ in range(3):
        await list_workflows(client, other)
    # A stream is refused the same way, before its first message.
    _, streamed = await stream_error(
        client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(spec=struct(answer_spec()), inputs=struct({})),
            metadata=api.metadata(),
        ),
        before_any=True,
    )
    assert streamed.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(streamed).reason == "rate_limited.tenant"


async def test_health_needs_no_rate(tenant_limited: tuple[RunningApi, Client]) -> None:
    api, client = tenant_limited
    for _ in range(3):
        await list_workflows(client, api.metadata())
    refused = await rpc_error(list_workflows(client, api.metadata()))
    assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    for _ in range(10):
        health = await client.health.GetHealth(hl.GetHealthRequest(), metadata=api.metadata())
        assert health.status == "SERVING"


async def test_a_key_over_its_burst_is_refused_and_the_tenants_other_keys_go_on(
    migrated_dsn: str, redis_url: str, owner: object
) -> None:
    settings = api_settings(
        migrated_dsn, redis_url, key_requests_per_second=SLOW_RATE, key_request_burst=2
    )
    async with running_api(settings) as api, api.channel() as channel:
        client = client_of(channel)
        for _ in range(2):
            await list_workflows(client, api.metadata(Role.ADMIN))
        error = await rpc_error(list_workflows(client, api.metadata(Role.ADMIN)))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(error).reason == "rate_limited.api_key"
        assert retry_delay(error) > 900
        for _ in range(2):
            await list_workflows(client, api.metadata(Role.VIEWER))


async def test_with_redis_down_the_api_answers_without_limits(
    migrated_dsn: str, owner: object
) -> None:
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    settings = api_settings(
        migrated_dsn, dead, tenant_requests_per_second=SLOW_RATE, tenant_request_burst=1
    )
    async with running_api(settings) as api, api.channel() as channel:
        client = client_of(channel)
        for _ in range(5):
            await list_workflows(client, api.metadata())
        assert api.server.app.limiter.guard.failures >= 1


async def test_a_sources_requests_per_minute_hold_its_runs_back(
    api: RunningApi, provider: FakeProviderServer
) -> None:
    async with api.channel() as channel:
        client = client_of(channel)
        source = sr.Source(
            display_name="openai-main",
            type="openai",
            config=struct(
                {
                    "base_url": f"{provider.url}/v1",
                    "model": "fake-model",
                    "limits": {"requests_per_minute": 2},
                }
            ),
            secrets={"api_key": "sk-api-test"},
        )
        await client.sources.CreateSource(
            sr.CreateSourceRequest(source=source), metadata=api.metadata()
        )
        runs = []
        for _ in range(3):
            events = [
                event
                async for event in client.executions.ExecuteWorkflow(
                    ex.ExecuteWorkflowRequest(
                        spec=struct(answer_spec()), inputs=struct({"question": "why?"})
                    ),
                    metadata=api.metadata(),
                )
            ]
            assert_well_formed(events)
            runs.append(events)
        assert [run[-1].type for run in runs] == [
            "execution_completed",
            "execution_completed",
            "execution_failed",
        ]
        assert chat_requests(provider) == 2
        (failed,) = [event for event in runs[2] if event.type == "node_failed"]
        assert failed.data["code"] == "provider.rate_limited"
        assert "2 requests a minute" in failed.data["message"]


async def test_bad_source_limits_are_invalid_arguments(api: RunningApi) -> None:
    async with api.channel() as channel:
        client = client_of(channel)
        source = sr.Source(
            display_name="openai-main",
            type="openai",
            config=struct({"model": "fake-model", "limits": {"requests_per_minute": -5}}),
            secrets={"api_key": "sk-api-test"},
        )
        error = await rpc_error(
            client.sources.CreateSource(
                sr.CreateSourceRequest(source=source), metadata=api.metadata()
            )
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "config.limits.requests_per_minute" in (error.details() or "")
