"""Benchmark: background executions through the job queue, on 1 and on 2 server replicas.

    python bench/scale.py [--runs 200] [--concurrency 50] [--latency 0.05] [--workers 50]

Everything runs on this machine and is stopped at the end: an embedded PostgreSQL and an
embedded Valkey in a temporary directory, the fake OpenAI-compatible provider (every request
answered after `--latency` s), and the replicas: `agentflow serve` processes on that database
and Valkey, each with `--workers` workers. The workflow is a 5-node chain (an input node, then
four llm nodes, each streaming its reply; four provider calls a run).

For 1 and 2 replicas: `--concurrency` clients each start a background execution
(StartExecution, to the replicas in turn) and follow it (StreamExecution, on the next replica in
turn: half of the streams are served by a replica that does not run the run, through Redis),
until `--runs` runs have ended. Reported: runs/s; p50/p99 time to the first event and to the
terminal one (both from the StartExecution call); and per node, the Redis round trips (replies
Valkey wrote: a pipeline is one) and commands, from Valkey's own `INFO stats`, over everything
the replicas and clients did in the level (workers waiting on the queue and heartbeats
included).

Client, replicas, provider, PostgreSQL and Valkey share the machine (2 cores here): a second
replica adds no cores, so what it shows is that work spreads and nothing is lost or repeated —
on a 2-core machine the throughput is bound by CPU, not by the replicas' count.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/grpc.py sits beside this file, and Python puts this folder first on sys.path, where
# `import grpc` would find it instead of the package.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import asyncio
import itertools
import tempfile
import time
from typing import Any

import grpc
import redis.asyncio as redis
from google.protobuf import struct_pb2

from agentflow_grpc._gen.agentflow.v1 import (
    execution_pb2,
    execution_pb2_grpc,
    source_pb2,
    source_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from agentflow_grpc.devstack.postgres import EmbeddedPostgres, create_database
from agentflow_grpc.devstack.valkey import EmbeddedValkey
from agentflow_grpc.model.records import Role
from agentflow_grpc.services.tenants import TenantService
from agentflow_grpc.storage import migrations
from agentflow_grpc.storage.database import Database
from agentflow_grpc.testing import FakeProviderServer
from agentflow_grpc.testing.replicas import (
    Replicas,
    ReplicaStartError,
    new_secret_keys,
    replica_environment,
)

CHAIN = 4  # llm nodes after the input node
NODES = CHAIN + 1
TERMINAL = ("execution_completed", "execution_failed", "execution_cancelled")


def chain_spec() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "input"}]
    edges = []
    previous = "start"
    for number in range(1, CHAIN + 1):
        prompt = (
            "Step {{ inputs.question }}"
            if number == 1
            else f"Go on: {{{{ nodes.step{number - 1}.output.text }}}}"
        )
        nodes.append(
            {
                "id": f"step{number}",
                "type": "llm",
                "source": "openai-main",
                "config": {"prompt": prompt},
            }
        )
        edges.append({"from": previous, "to": f"step{number}"})
        previous = f"step{number}"
    return {
        "api_version": "agentflow/v1",
        "name": "bench-chain",
        "inputs": {"question": {"type": "string"}},
        "outputs": {"answer": {"from": f"nodes.{previous}.output.text"}},
        "nodes": nodes,
        "edges": edges,
    }


def struct(document: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(document)
    return message


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def redis_counters(client: redis.Redis) -> tuple[int, int]:
    """Commands Valkey has run, and replies it has written (one per round trip: a pipeline of
    N commands is one reply write), so far."""
    stats = await client.info("stats")
    return int(stats["total_commands_processed"]), int(stats["total_writes_processed"])


async def one_run(
    start: execution_pb2_grpc.ExecutionServiceStub,
    follow: execution_pb2_grpc.ExecutionServiceStub,
    metadata: tuple[tuple[str, str], ...],
    workflow: str,
) -> tuple[float, float]:
    began = time.perf_counter()
    execution = await start.StartExecution(
        execution_pb2.StartExecutionRequest(workflow=workflow, inputs=struct({"question": "go"})),
        metadata=metadata,
        timeout=60,
    )
    first = 0.0
    async for event in follow.StreamExecution(
        execution_pb2.StreamExecutionRequest(name=execution.name), metadata=metadata, timeout=120
    ):
        first = first or time.perf_counter() - began
        if event.type in TERMINAL:
            if event.type != "execution_completed":
                raise RuntimeError(f"a run ended {event.type}: {event.data}")
            break
    return first * 1000, (time.perf_counter() - began) * 1000


async def prepare(address: str, key: str, provider_url: str) -> str:
    """The source and the workflow, made through the API; the workflow's name."""
    metadata = (("x-api-key", key),)
    async with grpc.aio.insecure_channel(address) as channel:
        await source_pb2_grpc.SourceServiceStub(channel).CreateSource(
            source_pb2.CreateSourceRequest(
                source=source_pb2.Source(
                    display_name="openai-main",
                    type="openai",
                    config=struct({"base_url": f"{provider_url}/v1", "model": "fake-model"}),
                    secrets={"api_key": "sk-bench"},
                )
            ),
            metadata=metadata,
        )
        workflow = await workflow_pb2_grpc.WorkflowServiceStub(channel).CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(
                workflow=workflow_pb2.Workflow(spec=struct(chain_spec()))
            ),
            metadata=metadata,
        )
    return str(workflow.name)


async def level(
    args: argparse.Namespace, replicas: Replicas, key: str, workflow: str, valkey: str
) -> str:
    metadata = (("x-api-key", key),)
    channels = [grpc.aio.insecure_channel(address) for address in replicas.addresses]
    stubs = [execution_pb2_grpc.ExecutionServiceStub(c) for c in channels]
    counter = redis.Redis.from_url(valkey)
    try:
        turn = itertools.count()

        def pair() -> tuple[execution_pb2_grpc.ExecutionServiceStub, ...]:
            n = next(turn)
            return stubs[n % len(stubs)], stubs[(n + 1) % len(stubs)]

        await asyncio.gather(*(one_run(*pair(), metadata, workflow) for _ in range(10)))
        results: list[tuple[float, float]] = []
        remaining = itertools.count()

        async def client() -> None:
            while next(remaining) < args.runs:
                results.append(await one_run(*pair(), metadata, workflow))

        commands_before, trips_before = await redis_counters(counter)
        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.concurrency)))
        wall = time.perf_counter() - began
        commands_after, trips_after = await redis_counters(counter)
        commands = commands_after - commands_before - 1  # not this INFO
        trips = trips_after - trips_before - 1
        firsts = [first for first, _ in results]
        totals = [total for _, total in results]
        return (
            f"  {len(replicas)} replica{'s' if len(replicas) > 1 else ' '}  "
            f"{len(results) / wall:6.1f} runs/s   "
            f"first event p50 {percentile(firsts, 0.5):7.1f} ms  "
            f"p99 {percentile(firsts, 0.99):7.1f} ms   "
            f"total p50 {percentile(totals, 0.5):7.1f} ms  "
            f"p99 {percentile(totals, 0.99):7.1f} ms   "
            f"Redis per node: {trips / (len(results) * NODES):5.1f} round trips, "
            f"{commands / (len(results) * NODES):5.1f} commands"
        )
    finally:
        for channel in channels:
            await channel.close()
        await counter.aclose()


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-scale-") as folder:
        home = Path(folder)
        postgres = EmbeddedPostgres(home, delete=True)
        valkey = EmbeddedValkey(home, persist=False)
        with postgres as server_dsn, FakeProviderServer(latency=args.latency) as provider:
            valkey_url = valkey.start()
            try:
                dsn = await create_database(server_dsn, "bench")
                await migrations.upgrade(dsn)
                database = await Database.connect(dsn, min_size=1, max_size=2, acquire_timeout=30)
                try:
                    tenants = TenantService(database)
                    await tenants.create_tenant("bench", actor="operator:bench")
                    _, key = await tenants.create_api_key(
                        "bench", role=Role.EDITOR, actor="operator:bench"
                    )
                finally:
                    await database.close()
                environment = replica_environment(
                    dsn,
                    valkey_url,
                    secret_keys=new_secret_keys("bench"),
                    workers=args.workers,
                    database_pool_max=20,
                    log_level="WARNING",
                )
                print(
                    f"{NODES}-node chain ({CHAIN} llm calls a run), provider "
                    f"{args.latency * 1000:g} ms, {args.concurrency} clients, {args.runs} runs per "
                    f"level, {args.workers} workers a replica"
                )
                with Replicas(environment, home) as replicas:
                    workflow = ""
                    for count in (1, 2):
                        try:
                            replicas.start(count - len(replicas))
                        except ReplicaStartError as exc:
                            raise SystemExit(str(exc)) from None
                        if not workflow:
                            workflow = await prepare(replicas[0].address, key, provider.url)
                        report = await level(args, replicas, key, workflow, valkey_url)
                        print(report, flush=True)
            finally:
                valkey.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=50)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
