"""Two server replicas as real processes, on one PostgreSQL and one Valkey, behind Envoy (round
robin): background runs go through the job queue to whichever replica's worker takes them up;
streams and cancellation work from any replica; a replica killed mid-run leaves its run to the
other, which resumes it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import redis.asyncio as redis
from support.api_helpers import eventually, plain, stream_error, struct
from support.gateway_fixtures import read_sse
from support.replicas import Cluster, Replica, cluster
from support.runs import answer_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import source_pb2, workflow_pb2
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.records import Role
from agentflow_grpc.services.tenants import TenantService
from agentflow_grpc.storage.database import Database
from agentflow_grpc.testing import FakeProviderServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SLOW_REPLY = " ".join(f"word{n}" for n in range(12))  # 12 chunks, streamed slowly
State = ex.Execution.State


@pytest.fixture
async def replicas(
    migrated_dsn: str, redis_url: str, database: Database, owner: object, tmp_path: Path
) -> AsyncIterator[Cluster]:
    tenants = TenantService(database)
    await tenants.create_tenant("acme", actor="operator:test")
    _, key = await tenants.create_api_key("acme", role=Role.ADMIN, actor="operator:test")
    with cluster(
        migrated_dsn,
        redis_url,
        key,
        tmp_path / "cluster",
        job_visibility_timeout=2,
        workers=4,
    ) as running:
        try:
            yield running
        finally:
            await running.close()


async def _workflow(cluster: Cluster, provider: FakeProviderServer, *, slow: bool) -> str:
    if slow:
        provider.add_rule(reply=SLOW_REPLY, chunk_delay=0.4)
    client = cluster.client(cluster.replicas[0])
    await client.sources.CreateSource(
        source_pb2.CreateSourceRequest(
            source=source_pb2.Source(
                display_name="openai-main",
                type="openai",
                config=struct({"base_url": f"{provider.url}/v1", "model": "fake-model"}),
                secrets={"api_key": "sk-replicas"},
            )
        ),
        metadata=cluster.metadata,
    )
    created = await client.workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(spec=struct(answer_spec()))
        ),
        metadata=cluster.metadata,
    )
    return str(created.name)


async def _start(replica: Replica, cluster: Cluster, workflow: str) -> ex.Execution:
    request = ex.StartExecutionRequest(workflow=workflow, inputs=struct({"question": "Count"}))
    executions = cluster.client(replica).executions
    return await executions.StartExecution(request, metadata=cluster.metadata)  # type: ignore[no-any-return]


async def _runner(cluster: Cluster, valkey: redis.Redis, name: str) -> Replica:
    """The replica holding the run's lease (once a worker has taken it up)."""
    execution_id = name.removeprefix("executions/")
    key = RedisKeys(cluster.prefix).run_lease(uuid.UUID(execution_id))

    async def holder() -> bytes | None:
        return await valkey.get(key)  # type: ignore[no-any-return]

    value = await eventually(holder, timeout=15)
    return cluster.runner_of(value.decode())


async def _stream(
    replica: Replica, cluster: Cluster, name: str, after: int = 0, limit: int | None = None
) -> list[ex.ExecutionEvent]:
    events = []
    call = cluster.client(replica).executions.StreamExecution(
        ex.StreamExecutionRequest(name=name, after_sequence=after), metadata=cluster.metadata
    )
    async for event in call:
        events.append(event)
        if limit is not None and len(events) == limit:
            call.cancel()
            break
    return events


async def _get(replica: Replica, cluster: Cluster, name: str) -> ex.Execution:
    return await cluster.client(replica).executions.GetExecution(  # type: ignore[no-any-return]
        ex.GetExecutionRequest(name=name), metadata=cluster.metadata
    )


async def _running_slowly(
    cluster: Cluster, provider: FakeProviderServer, valkey: redis.Redis, *, stored: int
) -> tuple[ex.Execution, Replica, Replica]:
    """A slow background run, taken up by a worker and `stored` events into its log: the run,
    the replica running it, and the other one."""
    workflow = await _workflow(cluster, provider, slow=True)
    started = await _start(cluster.replicas[0], cluster, workflow)
    runner = await _runner(cluster, valkey, started.name)
    other = cluster.other_than(runner)

    async def far_enough() -> ex.Execution | None:
        execution = await _get(other, cluster, started.name)
        return execution if execution.last_sequence >= stored else None

    await eventually(far_enough, timeout=15)
    return started, runner, other


def _assert_log(events: list[ex.ExecutionEvent]) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "execution_started"
    assert events[-1].type in ("execution_completed", "execution_failed", "execution_cancelled")


async def test_started_on_one_replica_streamed_from_the_other_without_gap_or_duplicate(
    replicas: Cluster, provider: FakeProviderServer, valkey: redis.Redis
) -> None:
    workflow = await _workflow(replicas, provider, slow=True)
    started = await _start(replicas.replicas[0], replicas, workflow)
    runner = await _runner(replicas, valkey, started.name)
    elsewhere = replicas.other_than(runner)

    # From the replica that does not run it: stored events, then live ones through Redis.
    first_part = await _stream(elsewhere, replicas, started.name, limit=6)
    assert [e.sequence for e in first_part] == [1, 2, 3, 4, 5, 6]
    # Reconnect (to the runner this time) with the last sequence seen: the rest, nothing twice.
    rest = await _stream(runner, replicas, started.name, after=6)
    whole = first_part + rest
    _assert_log(whole)
    assert whole[-1].type == "execution_completed"
    tokens = "".join(e.data["text"] for e in whole if e.type == "node_token")
    assert tokens == SLOW_REPLY
    # And the whole stream from the other replica, after the end, is the same story.
    again = await _stream(elsewhere, replicas, started.name)
    assert [(e.sequence, e.type, e.node_id) for e in again] == [
        (e.sequence, e.type, e.node_id) for e in whole
    ]


async def test_a_replica_killed_mid_run_leaves_the_run_to_the_other_which_resumes_it(
    replicas: Cluster, provider: FakeProviderServer, valkey: redis.Redis
) -> None:
    started, runner, survivor = await _running_slowly(replicas, provider, valkey, stored=6)
    before = await _get(survivor, replicas, started.name)
    runner.kill()
    killed_at = time.monotonic()

    events = await _stream(survivor, replicas, started.name)  # stored, then the resumed run
    _assert_log(events)
    assert events[-1].type == "execution_completed"
    assert time.monotonic() - killed_at < 30
    resumed = [e for e in events if e.type == "execution_resumed"]
    assert len(resumed) == 1
    # It continues the stored log: everything the dead replica had stored, then the new run.
    assert resumed[0].data["resumed_after_sequence"] >= before.last_sequence
    assert resumed[0].sequence == resumed[0].data["resumed_after_sequence"] + 1
    assert resumed[0].data["delivery"] == 2
    assert "stopped" in resumed[0].data["reason"]
    final = await _get(survivor, replicas, started.name)
    assert final.state == State.STATE_COMPLETED
    assert final.outputs["answer"] == SLOW_REPLY
    # The run after the resumption is whole on its own: every token of the reply again.
    after = events[events.index(resumed[0]) :]
    assert "".join(e.data["text"] for e in after if e.type == "node_token") == SLOW_REPLY


async def test_cancel_on_one_replica_stops_the_run_on_the_other(
    replicas: Cluster, provider: FakeProviderServer, valkey: redis.Redis
) -> None:
    started, runner, elsewhere = await _running_slowly(replicas, provider, valkey, stored=4)
    began = time.monotonic()
    cancelled = await replicas.client(elsewhere).executions.CancelExecution(
        ex.CancelExecutionRequest(name=started.name, reason="stop it from the other side"),
        metadata=replicas.metadata,
    )
    assert cancelled.state == State.STATE_CANCELLED
    assert time.monotonic() - began < 5  # pub/sub, not the heartbeat
    events = await _stream(runner, replicas, started.name)
    _assert_log(events)
    assert events[-1].type == "execution_cancelled"
    assert events[-1].data["reason"] == "stop it from the other side"
    assert runner.alive()
    assert elsewhere.alive()


async def test_through_envoy_runs_land_on_both_replicas_and_stream_as_sse(
    replicas: Cluster, provider: FakeProviderServer
) -> None:
    workflow = await _workflow(replicas, provider, slow=False)
    headers = {"x-api-key": replicas.key}
    async with httpx.AsyncClient(
        base_url=replicas.gateway.base_url, headers=headers, timeout=30
    ) as http:
        names = []
        for _ in range(6):
            response = await http.post(
                "/v1/executions", json={"workflow": workflow, "inputs": {"question": "Hi"}}
            )
            assert response.status_code == 200, response.text
            names.append(response.json()["name"])
        streams = await asyncio.gather(*(read_sse(http, "GET", f"/v1/{n}:stream") for n in names))
    for stream in streams:
        assert stream.status == 200
        assert [e["type"] for e in stream.events][-1] == "execution_completed"
        assert [int(e["sequence"]) for e in stream.events] == list(range(1, len(stream.events) + 1))

    # Round robin: both replicas took StartExecution calls (their access logs say so).
    def started_on(replica: Replica) -> int:
        lines = replica.log.read_text().splitlines()
        return sum('"/agentflow.v1.ExecutionService/StartExecution"' in line for line in lines)

    assert all(started_on(replica) > 0 for replica in replicas.replicas), [
        started_on(replica) for replica in replicas.replicas
    ]
    assert sum(started_on(replica) for replica in replicas.replicas) == len(names)


async def test_a_replica_stopped_gracefully_hands_its_runs_over_instead_of_cancelling(
    replicas: Cluster, provider: FakeProviderServer, valkey: redis.Redis
) -> None:
    started, runner, survivor = await _running_slowly(replicas, provider, valkey, stored=5)
    began = time.monotonic()
    runner.stop()  # SIGTERM: a rolling deploy, say (shutdown grace 1 s)

    events = await _stream(survivor, replicas, started.name)
    _assert_log(events)
    assert events[-1].type == "execution_completed"
    assert [e.type for e in events].count("execution_resumed") == 1
    # Handed back, not abandoned: taken up well before the visibility timeout would pass.
    assert time.monotonic() - began < 20
    final = await _get(survivor, replicas, started.name)
    assert final.state == State.STATE_COMPLETED


# --- durable runs: resumed from the log, streamed ones included (issue #17) ---

STEP_REPLY = "done"


def _chain_spec() -> dict[str, object]:
    """input → one → two → three (llm nodes; three is slow, the provider rules say)."""
    steps = ["ONE", "TWO", "THREE"]
    nodes: list[dict[str, object]] = [{"id": "start", "type": "input"}]
    edges = []
    previous = "start"
    for step in steps:
        node_id = step.lower()
        nodes.append(
            {
                "id": node_id,
                "type": "llm",
                "source": "openai-main",
                "config": {"prompt": f"STEP-{step} {{{{ inputs.question }}}}"},
            }
        )
        edges.append({"from": previous, "to": node_id})
        previous = node_id
    return {
        "api_version": "agentflow/v1",
        "name": "chain",
        "inputs": {"question": {"type": "string"}},
        "outputs": {"answer": {"from": "nodes.three.output.text"}},
        "nodes": nodes,
        "edges": edges,
    }


async def _chain_workflow(cluster: Cluster, provider: FakeProviderServer) -> str:
    await _workflow(cluster, provider, slow=False)  # the source (and an unused workflow)
    provider.add_rule(contains="STEP-THREE", reply=SLOW_REPLY, chunk_delay=0.4)
    provider.add_rule(reply=STEP_REPLY)
    created = await cluster.client(cluster.replicas[0]).workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(spec=struct(_chain_spec()))
        ),
        metadata=cluster.metadata,
    )
    return str(created.name)


def _calls(provider: FakeProviderServer, step: str) -> int:
    return sum(
        f"STEP-{step} " in str(request.body)
        for request in provider.requests
        if request.path.endswith("/chat/completions")
    )


async def _stream_until(
    call: AsyncIterator[ex.ExecutionEvent], node_id: str, kind: str
) -> list[ex.ExecutionEvent]:
    seen = []
    async for event in call:
        seen.append(event)
        if event.node_id == node_id and event.type == kind:
            return seen
    raise AssertionError(f"the stream ended before {node_id} {kind}")


async def test_a_streamed_run_whose_server_is_killed_is_resumed_elsewhere_from_its_log(
    replicas: Cluster, provider: FakeProviderServer
) -> None:
    workflow = await _chain_workflow(replicas, provider)
    runner, survivor = replicas.replicas[0], replicas.replicas[1]
    call = replicas.client(runner).executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(workflow=workflow, inputs=struct({"question": "q"})),
        metadata=replicas.metadata,
    )
    seen = await _stream_until(call, "three", "node_token")  # one and two are done
    name = seen[0].execution
    runner.kill()
    killed_at = time.monotonic()

    # The caller reconnects, anywhere, after the last event it saw: the continuation.
    rest = await _stream(survivor, replicas, name, after=seen[-1].sequence)
    whole = seen + rest
    assert [e.sequence for e in whole] == list(range(1, len(whole) + 1))
    assert whole[-1].type == "execution_completed"
    assert time.monotonic() - killed_at < 30
    resumed = next(e for e in rest if e.type == "execution_resumed")
    restored = {i["node_id"] for i in plain(resumed.data)["restored_nodes"]}
    assert restored == {"start", "one", "two"}
    assert plain(resumed.data)["interrupted_nodes"] == ["three"]
    # Paid once: the nodes that completed were not called again; three was in flight.
    assert (_calls(provider, "ONE"), _calls(provider, "TWO"), _calls(provider, "THREE")) == (
        1,
        1,
        2,
    )
    final = await _get(survivor, replicas, name)
    assert final.state == State.STATE_COMPLETED
    assert final.outputs["answer"] == SLOW_REPLY
    # The log read back is the same story the caller put together.
    again = await _stream(survivor, replicas, name)
    assert [(e.sequence, e.type) for e in again] == [(e.sequence, e.type) for e in whole]


async def test_a_streamed_run_is_resumed_by_its_own_server_restarted_when_alone(
    replicas: Cluster, provider: FakeProviderServer
) -> None:
    workflow = await _chain_workflow(replicas, provider)
    replicas.replicas[1].stop()  # one replica left
    runner = replicas.replicas[0]
    call = replicas.client(runner).executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(workflow=workflow, inputs=struct({"question": "q"})),
        metadata=replicas.metadata,
    )
    seen = await _stream_until(call, "three", "node_started")
    name = seen[0].execution
    restarted = replicas.replicas.restart(runner, kill=True)

    rest = await _stream(restarted, replicas, name, after=seen[-1].sequence)
    whole = seen + rest
    assert [e.sequence for e in whole] == list(range(1, len(whole) + 1))
    assert whole[-1].type == "execution_completed"
    assert (_calls(provider, "ONE"), _calls(provider, "TWO")) == (1, 1)


async def test_a_graceful_stop_hands_a_streamed_run_over_and_tells_its_caller_where_to_follow(
    replicas: Cluster, provider: FakeProviderServer
) -> None:
    workflow = await _chain_workflow(replicas, provider)
    runner, survivor = replicas.replicas[0], replicas.replicas[1]
    call = replicas.client(runner).executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(workflow=workflow, inputs=struct({"question": "q"})),
        metadata=replicas.metadata,
    )
    seen = await _stream_until(call, "three", "node_token")
    runner.terminate()  # SIGTERM: shutdown grace 1 s, then the run is handed over

    more, error = await stream_error(call)
    seen += more
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    moved = seen.pop()  # the stream's last message says where to pick the run up
    assert moved.type == "stream_error"
    assert moved.sequence == 0
    after = int(plain(moved.data)["resume_after_sequence"])
    assert plain(moved.data)["error"]["code"] == "execution.moved"
    assert after == seen[-1].sequence
    rest = await _stream(survivor, replicas, seen[0].execution, after=after)
    whole = seen + rest
    assert [e.sequence for e in whole] == list(range(1, len(whole) + 1))
    assert whole[-1].type == "execution_completed"
    assert (_calls(provider, "ONE"), _calls(provider, "TWO")) == (1, 1)
