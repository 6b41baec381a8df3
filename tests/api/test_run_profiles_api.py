"""GetExecution's run profile and the provider times in its node trace, over gRPC, for real runs
against the fake provider (docs/observability.md, "Run profiles").

Lower bounds come from the provider's deliberate delays; the rest are relations that hold on
any machine (parts within the whole, the union of parallel branches below their sum).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import (
    FINAL_STATES,
    Client,
    assert_well_formed,
    client_of,
    create_openai_source,
    eventually,
    struct,
)
from support.runs import answer_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc.testing import FakeProviderServer

ROUNDING = 0.01  # the profile's numbers are rounded to microseconds


def parallel_spec() -> dict[str, Any]:
    """input → two llm nodes side by side (`left`, `right`) → outputs of both."""
    llm = {"type": "llm", "source": "openai-main"}
    return {
        "api_version": "agentflow/v1",
        "name": "parallel",
        "inputs": {"question": {"type": "string"}},
        "outputs": {
            "left": {"from": "nodes.left.output.text"},
            "right": {"from": "nodes.right.output.text"},
        },
        "nodes": [
            {"id": "start", "type": "input"},
            {"id": "left", **llm, "config": {"prompt": "[left] {{ inputs.question }}"}},
            {"id": "right", **llm, "config": {"prompt": "[right] {{ inputs.question }}"}},
        ],
        "edges": [{"from": "start", "to": "left"}, {"from": "start", "to": "right"}],
    }


@pytest.fixture
async def client(api: RunningApi, provider: FakeProviderServer) -> AsyncIterator[Client]:
    async with api.channel() as channel:
        found = client_of(channel)
        await create_openai_source(found, api.metadata(), f"{provider.url}/v1")
        yield found


async def get(client: Client, md: Any, name: str) -> ex.Execution:
    return await client.executions.GetExecution(  # type: ignore[no-any-return]
        ex.GetExecutionRequest(name=name), metadata=md
    )


async def final(client: Client, md: Any, name: str, timeout: float = 15.0) -> ex.Execution:
    async def check() -> ex.Execution | None:
        execution = await get(client, md, name)
        return execution if execution.state in FINAL_STATES else None

    return await eventually(check, timeout=timeout)


async def start(client: Client, md: Any, spec: dict[str, Any]) -> ex.Execution:
    return await client.executions.StartExecution(  # type: ignore[no-any-return]
        ex.StartExecutionRequest(spec=struct(spec), inputs=struct({"question": "why?"})),
        metadata=md,
    )


def ms_between(start: Any, end: Any) -> float:
    return (end.ToNanoseconds() - start.ToNanoseconds()) / 1e6


def assert_parts_fit(profile: ex.ExecutionProfile) -> None:
    assert profile.wall_ms > 0
    assert 0 <= profile.nodes_ms <= profile.wall_ms + ROUNDING
    assert profile.engine_ms >= 0
    assert abs(profile.engine_ms - (profile.wall_ms - profile.nodes_ms)) <= ROUNDING


async def test_a_run_profile_splits_its_time_and_the_trace_has_each_attempts_provider_time(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="[left]", reply="left reply", delay=0.3, chunk_delay=0.01)
    provider.add_rule(contains="[right]", reply="right reply", delay=0.2, chunk_delay=0.01)
    request = ex.ExecuteWorkflowRequest(
        spec=struct(parallel_spec()), inputs=struct({"question": "why?"})
    )
    events = [event async for event in client.executions.ExecuteWorkflow(request, metadata=md)]
    assert_well_formed(events)
    assert events[-1].type == "execution_completed"

    execution = await get(client, md, events[-1].execution)
    assert execution.HasField("profile")
    profile = execution.profile
    assert_parts_fit(profile)
    assert profile.provider_ms >= 300 + 200  # both calls' deliberate delays, summed
    assert profile.event_log_ms > 0  # the log was written, and how long that took kept
    assert profile.queue_wait_ms >= 0  # ExecuteWorkflow: recorded, then run at once
    # Queue wait: created → started; wall time: started → ended (the record's own times).
    assert abs(profile.queue_wait_ms - ms_between(execution.create_time, execution.start_time)) < 1
    assert abs(profile.wall_ms - ms_between(execution.start_time, execution.end_time)) < 1

    attempts = {node.node_id: node.attempts[0] for node in execution.trace}
    assert set(attempts) == {"start", "left", "right"}
    for node_id, delay in (("left", 300), ("right", 200)):
        attempt = attempts[node_id]
        assert attempt.provider_first_token_ms >= delay
        assert attempt.provider_first_token_ms <= attempt.provider_ms <= attempt.duration_ms
    assert attempts["start"].provider_ms == 0
    assert profile.provider_ms == pytest.approx(
        sum(attempt.provider_ms for attempt in attempts.values()), abs=ROUNDING
    )
    # The branches ran side by side: node time counts their overlap once.
    assert profile.nodes_ms < sum(attempt.duration_ms for attempt in attempts.values())
    assert profile.nodes_ms >= attempts["left"].duration_ms - 1

    # Only GetExecution carries it.
    listed = await client.executions.ListExecutions(ex.ListExecutionsRequest(), metadata=md)
    assert [item.name for item in listed.executions] == [execution.name]
    assert not listed.executions[0].HasField("profile")


async def test_a_background_run_waited_in_the_queue_before_it_started(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(reply="fine", delay=0.05)
    started = await start(client, md, answer_spec())
    execution = await final(client, md, started.name)

    assert execution.state == ex.Execution.STATE_COMPLETED
    profile = execution.profile
    assert profile.queue_wait_ms > 0
    assert abs(profile.queue_wait_ms - ms_between(execution.create_time, execution.start_time)) < 1
    assert_parts_fit(profile)
    assert profile.provider_ms >= 50
    assert profile.event_log_ms > 0


async def test_a_profile_read_while_the_run_goes_on_measures_up_to_now(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(reply="late", delay=1.5)
    started = await start(client, md, answer_spec())

    async def reply_running() -> ex.Execution | None:
        execution = await get(client, md, started.name)
        statuses = {node.node_id: node.status for node in execution.trace}
        return execution if statuses.get("reply") == "running" else None

    running = await eventually(reply_running, timeout=10)
    assert running.state == ex.Execution.STATE_RUNNING
    assert_parts_fit(running.profile)
    assert running.profile.event_log_ms == 0  # kept with the terminal event
    ended = await final(client, md, started.name)
    assert ended.profile.wall_ms >= running.profile.wall_ms  # the clock went on
    assert ended.profile.event_log_ms > 0
    assert ended.profile.provider_ms >= 1500


async def test_a_run_queued_behind_another_counts_that_wait(
    migrated_dsn: str, redis_url: str, owner: object, provider: FakeProviderServer
) -> None:
    """One worker: the second background run waits for the first (≥ its 1 s provider delay,
    less the moments between the two requests)."""
    provider.add_rule(reply="slow", delay=1.0)
    async with (
        running_api(api_settings(migrated_dsn, redis_url, workers=1)) as api,
        api.channel() as channel,
    ):
        client = client_of(channel)
        md = api.metadata()
        await create_openai_source(client, md, f"{provider.url}/v1")
        first = await start(client, md, answer_spec())
        second = await start(client, md, answer_spec())
        first_done = await final(client, md, first.name)
        second_done = await final(client, md, second.name)

    assert ms_between(first_done.end_time, second_done.start_time) >= 0  # it waited its turn
    assert second_done.profile.queue_wait_ms >= 500
    assert second_done.profile.queue_wait_ms > first_done.profile.queue_wait_ms
