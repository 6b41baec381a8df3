"""Limits on runs, through a real server: concurrent executions per tenant (a streamed run over
the limit is refused; a queued one waits for a slot), tokens per day (a start after the quota
is spent is refused), and the LLM response cache scoped to the tenant (a hit skips the
provider; another tenant's identical run does not hit)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import (
    Client,
    client_of,
    create_openai_source,
    create_workflow,
    error_info,
    eventually,
    rpc_error,
    stream_error,
    struct,
)
from support.provider import SLOW
from support.runs import answer_spec, slow_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc.testing import FakeProviderServer

State = ex.Execution.State


@pytest.fixture
async def limited(
    migrated_dsn: str, redis_url: str, owner: object
) -> AsyncIterator[tuple[RunningApi, Client]]:
    settings = api_settings(
        migrated_dsn,
        redis_url,
        tenant_max_concurrent_executions=1,
        tenant_tokens_per_day=60,
    )
    async with running_api(settings) as api, api.channel() as channel:
        yield api, client_of(channel)


async def _get(client: Client, api: RunningApi, name: str) -> ex.Execution:
    return await client.executions.GetExecution(  # type: ignore[no-any-return]
        ex.GetExecutionRequest(name=name), metadata=api.metadata()
    )


async def test_a_tenant_at_its_concurrency_limit_streams_nothing_more_and_queues_the_rest(
    limited: tuple[RunningApi, Client], provider: FakeProviderServer
) -> None:
    api, client = limited
    provider.add_rule(contains=SLOW, delay=30)
    await create_openai_source(client, api.metadata(), f"{provider.url}/v1")
    first = await client.executions.StartExecution(
        ex.StartExecutionRequest(spec=struct(slow_spec()), inputs=struct({"question": "a"})),
        metadata=api.metadata(),
    )

    async def running() -> ex.Execution | None:
        found = await _get(client, api, first.name)
        return found if found.state == State.STATE_RUNNING else None

    await eventually(running, timeout=10)
    request = ex.ExecuteWorkflowRequest(
        spec=struct(answer_spec()), inputs=struct({"question": "b"})
    )
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(request, metadata=api.metadata()), before_any=True
    )
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(error).reason == "concurrency_limited.tenant"
    # Another tenant is not held back.
    other = (("x-api-key", api.other_tenant_key),)
    await create_openai_source(client, other, f"{provider.url}/v1")
    events = [e async for e in client.executions.ExecuteWorkflow(request, metadata=other)]
    assert events[-1].type == "execution_completed"

    queued = await client.executions.StartExecution(
        ex.StartExecutionRequest(spec=struct(answer_spec()), inputs=struct({"question": "c"})),
        metadata=api.metadata(),
    )
    for _ in range(5):
        assert (await _get(client, api, queued.name)).state == State.STATE_PENDING
    await client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=first.name), metadata=api.metadata()
    )

    async def done() -> ex.Execution | None:
        found = await _get(client, api, queued.name)
        return found if found.state == State.STATE_COMPLETED else None

    await eventually(done, timeout=20)  # the slot came back: the queued run ran


async def test_a_tenant_past_its_tokens_per_day_is_refused_until_tomorrow(
    limited: tuple[RunningApi, Client], provider: FakeProviderServer
) -> None:
    api, client = limited
    provider.add_rule(reply="word " * 80)  # one run spends more than the day's 60 tokens
    await create_openai_source(client, api.metadata(), f"{provider.url}/v1")
    request = ex.ExecuteWorkflowRequest(
        spec=struct(answer_spec()), inputs=struct({"question": "q"})
    )
    events = [e async for e in client.executions.ExecuteWorkflow(request, metadata=api.metadata())]
    assert events[-1].type == "execution_completed"
    assert events[-1].data["usage"]["total_tokens"] > 60

    async def refused() -> grpc.aio.AioRpcError | None:
        call = client.executions.ExecuteWorkflow(request, metadata=api.metadata())
        try:
            async for _ in call:
                return None  # not counted yet: the run's tokens are added as it ends
        except grpc.aio.AioRpcError as exc:
            return exc
        return None

    error = await eventually(refused, timeout=5)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(error).reason == "quota_exceeded.tokens_per_day"
    background = await rpc_error(
        client.executions.StartExecution(
            ex.StartExecutionRequest(spec=struct(answer_spec()), inputs=struct({"question": "q"})),
            metadata=api.metadata(),
        )
    )
    assert error_info(background).reason == "quota_exceeded.tokens_per_day"


async def test_the_response_cache_serves_a_tenants_repeat_and_only_that_tenants(
    api: RunningApi, provider: FakeProviderServer
) -> None:
    async with api.channel() as channel:
        client = client_of(channel)
        spec = answer_spec()
        spec["nodes"][1]["config"]["cache"] = {"ttl": 60}
        other = (("x-api-key", api.other_tenant_key),)
        workflows = {}
        for metadata in (api.metadata(), other):
            await create_openai_source(client, metadata, f"{provider.url}/v1")
            workflows[metadata] = (await create_workflow(client, metadata, spec)).name

        async def run(metadata: tuple[tuple[str, str], ...]) -> list[ex.ExecutionEvent]:
            request = ex.ExecuteWorkflowRequest(
                workflow=workflows[metadata], inputs=struct({"question": "same"})
            )
            return [e async for e in client.executions.ExecuteWorkflow(request, metadata=metadata)]

        first = await run(api.metadata())
        calls = len(provider.requests)
        second = await run(api.metadata())
        assert len(provider.requests) == calls  # a hit: no provider call
        completed = [e for e in second if e.type == "node_completed" and e.node_id == "reply"]
        assert completed[0].data["cache"] == "hit"
        assert completed[0].data["usage"]["cached_tokens"] > 0
        assert second[-1].data["outputs"] == first[-1].data["outputs"]
        stored = await client.executions.GetExecution(
            ex.GetExecutionRequest(name=second[0].execution), metadata=api.metadata()
        )
        assert stored.usage.cached_tokens == completed[0].data["usage"]["cached_tokens"]
        assert stored.usage.total_tokens == 0  # a hit spends nothing

        await run(other)  # the same spec and inputs, another tenant: its own provider call
        assert len(provider.requests) == calls + 1
