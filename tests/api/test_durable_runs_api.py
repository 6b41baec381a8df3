"""Durable streamed runs over gRPC (issue #17): a streamed run is owned by a job of the queue
while it runs and the job is acknowledged when it ends; nobody sees an event the log does not
hold; a caller may let its run go on when it disconnects (`on_disconnect: CONTINUE`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from support.api_fixtures import RunningApi
from support.api_helpers import (
    FINAL_STATES,
    Client,
    assert_invalid,
    assert_well_formed,
    client_of,
    create_openai_source,
    eventually,
    struct,
)
from support.provider import SLOW
from support.runs import slow_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.testing import FakeProviderServer

Event = ex.ExecutionEvent
State = ex.Execution.State
REPLY = " ".join(f"part{n}" for n in range(8))


@pytest.fixture
async def client(api: RunningApi, provider: FakeProviderServer) -> AsyncIterator[Client]:
    async with api.channel() as channel:
        found = client_of(channel)
        await create_openai_source(found, api.metadata(), f"{provider.url}/v1")
        yield found


def execute(client: Client, md: Any, **request: Any) -> AsyncIterator[Event]:
    return client.executions.ExecuteWorkflow(  # type: ignore[no-any-return]
        ex.ExecuteWorkflowRequest(
            spec=struct(slow_spec()), inputs=struct({"question": "q"}), **request
        ),
        metadata=md,
    )


async def get(client: Client, md: Any, name: str) -> ex.Execution:
    return await client.executions.GetExecution(  # type: ignore[no-any-return]
        ex.GetExecutionRequest(name=name), metadata=md
    )


async def final(client: Client, md: Any, name: str) -> ex.Execution:
    async def check() -> ex.Execution | None:
        execution = await get(client, md, name)
        return execution if execution.state in FINAL_STATES else None

    return await eventually(check, timeout=10)


async def test_every_event_a_caller_sees_is_stored_already(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, reply=REPLY, chunk_delay=0.05)
    seen = []
    async for event in execute(client, md):
        seen.append(event)
        # Read back at once: the log holds this event (a run resumed elsewhere continues from
        # there, so what the caller saw is never told differently).
        stored = await get(client, md, event.execution)
        assert stored.last_sequence >= event.sequence
    assert_well_formed(seen)
    assert seen[-1].type == "execution_completed"


async def test_a_streamed_run_is_owned_by_a_job_until_it_ends(
    api: RunningApi, client: Client, md: Any, provider: FakeProviderServer, valkey: redis.Redis
) -> None:
    provider.add_rule(contains=SLOW, reply=REPLY, chunk_delay=0.2)
    keys = RedisKeys(api.server.app.settings.redis_prefix)
    call = execute(client, md)
    first = await anext(aiter(call))
    pending = await valkey.xpending_range(keys.attached_jobs, "agentflow-workers", "-", "+", 10)
    assert len(pending) == 1  # claimed by this server from the start
    (_, fields), *_ = await valkey.xrange(keys.attached_jobs)
    assert fields[b"execution_id"].decode() == first.execution.removeprefix("executions/")
    assert await valkey.xlen(keys.jobs) == 0  # not a job for any other worker
    rest = [event async for event in call]
    assert rest[-1].type == "execution_completed"

    async def acknowledged() -> bool:
        return await valkey.xlen(keys.attached_jobs) == 0

    assert await eventually(acknowledged, timeout=5)


async def test_a_caller_that_goes_away_with_continue_leaves_the_run_going_to_its_end(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, reply=REPLY, chunk_delay=0.1)
    call = execute(client, md, on_disconnect=ex.DISCONNECT_POLICY_CONTINUE)
    seen = []
    async for event in call:
        seen.append(event)
        if event.type == "node_token":
            break
    call.cancel()  # type: ignore[attr-defined]

    execution = await final(client, md, seen[0].execution)
    assert execution.state == State.STATE_COMPLETED
    assert execution.outputs["answer"] == REPLY
    followed = [
        event
        async for event in client.executions.StreamExecution(
            ex.StreamExecutionRequest(name=execution.name), metadata=md
        )
    ]
    assert_well_formed(followed)
    assert [(e.sequence, e.type) for e in followed[: len(seen)]] == [
        (e.sequence, e.type) for e in seen
    ]


async def test_a_caller_that_goes_away_by_default_cancels_the_run(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, reply=REPLY, chunk_delay=0.5)
    call = execute(client, md, on_disconnect=ex.DISCONNECT_POLICY_CANCEL)
    first = await anext(aiter(call))
    call.cancel()  # type: ignore[attr-defined]
    execution = await final(client, md, first.execution)
    assert execution.state == State.STATE_CANCELLED


async def test_a_continued_run_can_still_be_cancelled(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, reply=REPLY, chunk_delay=1.0)
    call = execute(client, md, on_disconnect=ex.DISCONNECT_POLICY_CONTINUE)
    first = await anext(aiter(call))
    call.cancel()  # type: ignore[attr-defined]
    cancelled = await client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=first.execution, reason="enough"), metadata=md
    )
    assert cancelled.state == State.STATE_CANCELLED


async def test_an_unknown_disconnect_policy_is_invalid_argument(client: Client, md: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in execute(client, md, on_disconnect=7):
            pass
    assert_invalid(raised.value, "on_disconnect")
