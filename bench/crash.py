"""Benchmark: the kill -9 soak of #17. Two replicas; the one running a batch of runs is
SIGKILLed mid-way and started again, round after round; then what the runs, the provider, an
HTTP API and a following client made of it is checked.

    .venv/bin/python bench/crash.py [--rounds 20] [--batch 10] [--latency 0.3] [--wait 90]
                                    [--logs DIR] [--json]

Everything runs here and is stopped at the end (Ctrl-C, SIGTERM, errors): an embedded PostgreSQL
and Valkey in a temporary directory, the fake OpenAI-compatible provider (every call answered
after `--latency` s), the POST target (an HTTP API in this process: it applies a request when it
arrives, once per `Idempotency-Key` — a repeat is answered, not applied — and answers after
`--latency` s) and two `agentflow serve` replicas (`testing/replicas.py`, 8 workers each,
`AGENTFLOW_JOB_VISIBILITY_TIMEOUT=2`, so that a lost run is taken over within seconds).

The workflow: input → llm1 → llm2 → post (http POST) → llm3 → llm4 → llm5. Every prompt and
the POST body carry the run's marker (`inputs.run`): the provider's calls and the POSTs are
counted per run by it. Each round, on its victim (the replicas take turns): half the batch
through `StartExecution` sent to the victim (a worker of either replica takes it up; where each
run was at the kill is read from its lease), half through `ExecuteWorkflow` streamed from the
victim. Once every run of the batch has started the round's kill point (llm3, post, llm4, llm2
in turn: after the POST, during it, later, before it; at most 10 s), the victim is SIGKILLed
and restarted (on a new port). Every run has a follower: `StreamExecution(after_sequence=last
seen)` on the other replica, from where the streamed caller stopped, reconnecting after errors
(to the other replica). A round waits up to 15 s for its runs; at the end all get `--wait` s.

Checked (exit 1 if one fails): every run accepted and stored; runs ended = runs accepted, all
completed; provider calls per run ≤ 5 + kills of the replica running it (≥ 5 if completed);
the POST applied exactly once per run, every POST with an `Idempotency-Key` used by one run
only; every stored event log 1..N without gaps or duplicates, its one terminal event last;
every follower saw each stored event exactly once, nothing else. Reported too: where the live
runs were at the kills, and the time from a kill to the run's next `execution_resumed` event.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/grpc.py sits beside this file: not the grpc package.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # before grpc: no notes on forks at exit

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import re
import signal
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc
import redis.asyncio as redis
from aiohttp import web
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
from agentflow_grpc.observability.logging import configure_logging
from agentflow_grpc.services.tenants import TenantService
from agentflow_grpc.storage import migrations
from agentflow_grpc.storage.database import Database
from agentflow_grpc.testing import FakeProviderServer
from agentflow_grpc.testing.replicas import Replica, Replicas, replica_environment

PREFIX = "crash"  # AGENTFLOW_REDIS_PREFIX of the replicas: leases are `crash:run:{id}:lease`
CHAIN = ["input", "llm1", "llm2", "post", "llm3", "llm4", "llm5"]
LLM_NODES = 5
KILL_POINTS = ("llm3", "post", "llm4", "llm2")  # round n kills once all started KILL_POINTS[n % 4]
KILL_POINT_WAIT = 10.0
ROUND_WAIT = 15.0
TERMINAL = {"execution_completed", "execution_failed", "execution_cancelled"}
FINAL = ("completed", "failed", "cancelled")
MARKER = re.compile(r"crash-\d+-\d+")
STATES = {v: k.removeprefix("STATE_").lower() for k, v in execution_pb2.Execution.State.items()}


def spec() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "input", "type": "input"}]
    for node in CHAIN[1:]:
        if node == "post":
            body = {"run": "{{ inputs.run }}", "after": "{{ nodes.llm2.output.text }}"}
            config: dict[str, Any] = {"method": "POST", "url": "/apply", "body": body}
            nodes.append({"id": node, "type": "http", "source": "ledger", "config": config})
        else:
            config = {"prompt": f"{{{{ inputs.run }}}} {node}"}
            nodes.append({"id": node, "type": "llm", "source": "provider", "config": config})
    return {
        "api_version": "agentflow/v1",
        "name": "bench-crash",
        "inputs": {"run": {"type": "string"}},
        "outputs": {"answer": {"from": "nodes.llm5.output.text"}},
        "nodes": nodes,
        "edges": [{"from": a, "to": b} for a, b in itertools.pairwise(CHAIN)],
    }


def struct(document: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(document)
    return message


class Ledger:
    """The POST target: applies a request on arrival, once per `Idempotency-Key` (a repeat gets
    the first answer); a request without a key is applied every time. Answers after `latency`."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.requests: list[tuple[str | None, str]] = []  # (Idempotency-Key, run marker)
        self.applied: Counter[str] = Counter()  # run marker → applications
        self._answers: dict[str, dict[str, int]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        run = str((await request.json()).get("run"))
        key = request.headers.get("Idempotency-Key")
        self.requests.append((key, run))
        answer = self._answers.get(key or "")
        if answer is None:
            self.applied[run] += 1
            answer = {"applied": sum(self.applied.values())}
            if key:
                self._answers[key] = answer
        await asyncio.sleep(self.latency)
        return web.json_response(answer)


@dataclass(eq=False)
class Run:
    marker: str
    mode: str  # background, streamed
    name: str = ""  # executions/{id}, once accepted
    refused: str = ""
    streaming_on: Replica | None = None  # the replica its ExecuteWorkflow stream is open to
    seen: dict[int, tuple[str, str]] = field(default_factory=dict)  # caller's and follower's
    last: int = 0
    anomalies: list[str] = field(default_factory=list)
    started: set[str] = field(default_factory=set)  # nodes seen starting
    end: str = ""
    kills: list[float] = field(default_factory=list)  # kills of the replica running it
    resumed: list[float] = field(default_factory=list)  # server times of execution_resumed

    def saw(self, event: execution_pb2.ExecutionEvent) -> None:
        sequence = event.sequence
        if sequence <= self.last:
            self.anomalies.append(f"{sequence} again")
            return
        if sequence != self.last + 1:
            self.anomalies.append(f"{self.last + 1}..{sequence - 1} skipped")
        self.seen[sequence], self.last = (event.type, event.node_id), sequence
        if event.type == "node_started":
            self.started.add(event.node_id)
        if event.type == "execution_resumed":
            self.resumed.append(event.time.seconds + event.time.nanos / 1e9)
        if event.type in TERMINAL:
            self.end = event.type


class Cluster:
    """The two replicas and a channel to each, renewed when one is restarted."""

    def __init__(self, replicas: Replicas, key: str) -> None:
        self.replicas, self.metadata = replicas, (("x-api-key", key),)
        self.channels = [grpc.aio.insecure_channel(r.address) for r in replicas]

    def stub(self, number: int) -> execution_pb2_grpc.ExecutionServiceStub:
        return execution_pb2_grpc.ExecutionServiceStub(self.channels[number % 2])

    async def restart(self, victim: Replica) -> None:
        starting = asyncio.ensure_future(asyncio.to_thread(self.replicas.restart, victim))
        try:
            replacement = await asyncio.shield(starting)
        except asyncio.CancelledError:  # Ctrl-C: let it start, so that Replicas stops it
            with contextlib.suppress(Exception):
                await starting
            raise
        old = self.channels[victim.number]
        self.channels[victim.number] = grpc.aio.insecure_channel(replacement.address)
        await old.close()

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def follow(cluster: Cluster, run: Run, prefer: int) -> None:
    """StreamExecution after the last event seen, on `prefer`, on the other replica after each
    error, until the terminal event."""
    attempt = 0
    while not run.end:
        request = execution_pb2.StreamExecutionRequest(name=run.name, after_sequence=run.last)
        try:
            stub = cluster.stub(prefer + attempt)
            async for event in stub.StreamExecution(request, metadata=cluster.metadata):
                run.saw(event)
                if run.end:
                    return
        except grpc.aio.AioRpcError:
            attempt += 1
        await asyncio.sleep(0.2)


async def drive(cluster: Cluster, run: Run, workflow: str, victim: Replica) -> None:
    inputs = struct({"run": run.marker})
    stub = cluster.stub(victim.number)
    if run.mode == "background":
        start = execution_pb2.StartExecutionRequest(workflow=workflow, inputs=inputs)
        try:
            run.name = (await stub.StartExecution(start, metadata=cluster.metadata)).name
        except grpc.aio.AioRpcError as exc:
            run.refused = exc.code().name
            return
    else:
        call = execution_pb2.ExecuteWorkflowRequest(workflow=workflow, inputs=inputs)
        run.streaming_on = victim
        try:
            async for event in stub.ExecuteWorkflow(call, metadata=cluster.metadata):
                run.name = run.name or event.execution
                run.saw(event)
                if run.end:
                    return
        except grpc.aio.AioRpcError as exc:
            if not run.name:
                run.refused = exc.code().name
                return
        finally:
            run.streaming_on = None
    await follow(cluster, run, victim.number + 1)


async def kill(
    cluster: Cluster, victim: Replica, runs: list[Run], valkey: redis.Redis
) -> dict[str, int]:
    """SIGKILL `victim` and restart it; where the live runs were: on the victim when their
    lease names its process (or, with no lease, their ExecuteWorkflow stream is open to it)."""
    where: Counter[str] = Counter()
    live = [r for r in runs if r.name and not r.end]
    leases = [f"{PREFIX}:run:{r.name.removeprefix('executions/')}:lease" for r in live]
    holders = await valkey.mget(leases) if leases else []
    on_victim = []
    for run, holder in zip(live, holders, strict=True):
        pid = int(holder.decode().rsplit(":", 2)[1]) if holder else None
        here = pid == victim.pid if pid else run.streaming_on is victim
        where[f"{run.mode} on {'victim' if here else 'other' if pid else 'none'}"] += 1
        if here:
            on_victim.append(run)
    victim.kill()
    killed = time.time()
    for run in on_victim:
        run.kills.append(killed)
    await cluster.restart(victim)
    return dict(where)


async def stored_log(
    cluster: Cluster, run: Run
) -> tuple[execution_pb2.Execution, dict[int, tuple[str, str]], str]:
    """The execution, its stored events (read from 0) and what is wrong with them, if any."""
    execution = await cluster.stub(0).GetExecution(
        execution_pb2.GetExecutionRequest(name=run.name), metadata=cluster.metadata, timeout=30
    )
    state = STATES[execution.state]
    events: dict[int, tuple[str, str]] = {}
    sequences: list[int] = []
    request = execution_pb2.StreamExecutionRequest(name=run.name)
    with contextlib.suppress(grpc.aio.AioRpcError):  # a run not over: what is stored by then
        timeout = 30 if state in FINAL else 2
        stub = cluster.stub(0)
        async for event in stub.StreamExecution(
            request, metadata=cluster.metadata, timeout=timeout
        ):
            sequences.append(event.sequence)
            events[event.sequence] = (event.type, event.node_id)
    terminals = [s for s in sequences if events[s][0] in TERMINAL]
    if sequences != list(range(1, len(sequences) + 1)):
        return execution, events, "sequences not 1..N"
    if state in FINAL and (terminals != sequences[-1:] or execution.last_sequence != len(events)):
        return execution, events, "not one terminal event, last"
    return execution, events, ""


async def prepare(cluster: Cluster, provider_url: str, ledger_url: str) -> str:
    """The two sources and the workflow, made through the API; the workflow's name."""
    channel = cluster.channels[0]
    sources = source_pb2_grpc.SourceServiceStub(channel)
    provider = {"base_url": f"{provider_url}/v1", "model": "fake-model"}
    ledger = {"base_url": ledger_url, "allow_private_network": True}
    for name, kind, config, secrets in (
        ("provider", "openai", provider, {"api_key": "sk-bench"}),
        ("ledger", "http", ledger, {}),
    ):
        source = source_pb2.Source(
            display_name=name, type=kind, config=struct(config), secrets=secrets
        )
        await sources.CreateSource(
            source_pb2.CreateSourceRequest(source=source), metadata=cluster.metadata
        )
    workflow = workflow_pb2.CreateWorkflowRequest(
        workflow=workflow_pb2.Workflow(spec=struct(spec()))
    )
    made = await workflow_pb2_grpc.WorkflowServiceStub(channel).CreateWorkflow(
        workflow, metadata=cluster.metadata
    )
    return str(made.name)


async def soak(
    args: argparse.Namespace, replicas: Replicas, key: str, valkey_url: str, urls: tuple[str, str]
) -> tuple[list[Run], list[dict[str, Any]], str, Cluster]:
    cluster = Cluster(replicas, key)
    valkey = redis.Redis.from_url(valkey_url)
    runs: list[Run] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        workflow = await prepare(cluster, *urls)
        placements: list[dict[str, Any]] = []
        for number in range(args.rounds):
            victim, point = replicas[number % 2], KILL_POINTS[number % len(KILL_POINTS)]
            batch = [
                Run(f"crash-{number}-{n}", "background" if n % 2 == 0 else "streamed")
                for n in range(args.batch)
            ]
            runs += batch
            began = time.monotonic()
            batch_tasks = [asyncio.create_task(drive(cluster, r, workflow, victim)) for r in batch]
            tasks += batch_tasks
            while time.monotonic() - began < KILL_POINT_WAIT and not all(
                r.refused or r.end or point in r.started for r in batch
            ):
                await asyncio.sleep(0.02)
            into = round(time.monotonic() - began, 2)
            live = await kill(cluster, victim, runs, valkey)
            await asyncio.wait(batch_tasks, timeout=ROUND_WAIT)
            ended = sum(bool(r.end) for r in batch)
            placements.append(
                {"victim": victim.number, "kill_point": point, "killed_after_s": into,
                 "live_runs": live, "batch_ended": ended}
            )  # fmt: skip
            print(
                f"round {number + 1:>2}: replica {victim.number} killed {into:.2f} s into the "
                f"batch (kill point {point}), live runs {live}; {ended}/{len(batch)} ended",
                file=sys.stderr,
                flush=True,
            )
        if left := [t for t in tasks if not t.done()]:
            await asyncio.wait(left, timeout=args.wait)
        return runs, placements, workflow, cluster
    except BaseException:
        await cluster.close()
        raise
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await valkey.aclose()


async def report(
    args: argparse.Namespace,
    outcome: tuple[list[Run], list[dict[str, Any]], str, Cluster],
    provider: FakeProviderServer,
    ledger: Ledger,
) -> dict[str, Any]:
    runs, placements, workflow, cluster = outcome
    accepted = [r for r in runs if r.name]
    stored = 0
    listing = execution_pb2.ListExecutionsRequest(workflow=workflow, page_size=100)
    while True:
        page = await cluster.stub(0).ListExecutions(listing, metadata=cluster.metadata)
        stored += len(page.executions)
        if not page.next_page_token:
            break
        listing.page_token = page.next_page_token
    calls: Counter[str] = Counter()
    for request in provider.requests:
        body = request.body if isinstance(request.body, dict) else {}
        if match := MARKER.search(json.dumps(body.get("messages", []))):
            calls[match.group()] += 1
    rows: list[dict[str, Any]] = []
    resume_times: list[float] = []
    for run in accepted:
        execution, events, problem = await stored_log(cluster, run)
        state, error = STATES[execution.state], execution.error
        follower = ", ".join(run.anomalies)
        if not follower and state in FINAL and run.seen != events:
            follower = f"saw {len(run.seen)} events of {len(events)} stored"
        made = calls[run.marker]
        bound = made <= LLM_NODES + len(run.kills) and (state != "completed" or made >= LLM_NODES)
        for killed in run.kills:
            later = [t for t in run.resumed if t >= killed]
            resume_times += [min(later) - killed] if later else []
        applied = ledger.applied[run.marker]  # never twice; once if completed
        rows.append(
            {
                "run": run.marker, "mode": run.mode, "execution": run.name, "state": state,
                "provider_calls": made, "kills": len(run.kills), "resumed": len(run.resumed),
                "posts_applied": applied, "log": problem or "ok", "follower": follower or "ok",
                "in_call_bound": bound,
                "error": f"{error.code}: {error.message}" if error.code else "",
                "post_ok": applied == 1 or (applied == 0 and state != "completed"),
            }
        )  # fmt: skip
    keys: dict[str, set[str]] = {}
    for key, marker in ledger.requests:
        if key is not None:
            keys.setdefault(key, set()).add(marker)
    per_key = Counter(k for k, _ in ledger.requests if k is not None)
    states = Counter(row["state"] for row in rows)
    per_run = [row["provider_calls"] for row in rows] or [0]
    at_kills: Counter[str] = Counter()
    for placement in placements:
        at_kills.update(placement["live_runs"])

    def failing(test: Any) -> list[str]:
        return [row["run"] for row in rows if test(row)]

    outside = failing(lambda row: not row["in_call_bound"])
    not_once = failing(lambda row: not row["post_ok"])
    bad_logs = failing(lambda row: row["log"] != "ok")
    bad_followers = failing(lambda row: row["follower"] != "ok")
    posts, keyless = len(ledger.requests), sum(1 for k, _ in ledger.requests if k is None)
    shared = sum(1 for markers in keys.values() if len(markers) > 1)
    checks = [
        ("runs accepted", f"{len(accepted)} of {len(runs)}", "all", len(accepted) == len(runs)),
        ("executions stored", str(stored), "= accepted", stored == len(accepted)),
        ("runs ended", f"{sum(states[s] for s in FINAL)}: {dict(states)}",
         "= accepted, all completed", states["completed"] == len(accepted)),
        ("provider calls per run", f"min {min(per_run)} mean {statistics.mean(per_run):.2f} "
         f"max {max(per_run)}; {len(outside)} runs outside", f"{LLM_NODES} … {LLM_NODES} + kills",
         not outside),
        ("POSTs applied per run", f"max {max(ledger.applied.values(), default=0)}; "
         f"{len(not_once)} runs not once", "1 (0 if not completed)", not not_once),
        ("POSTs with Idempotency-Key", f"{posts - keyless} of {posts}; "
         f"max {max(per_key.values(), default=0)} a key, {shared} keys of several runs",
         "all; a key per run", not keyless and not shared),
        ("stored logs with gaps", str(len(bad_logs)), "0", not bad_logs),
        ("followers: not each once", str(len(bad_followers)), "0", not bad_followers),
    ]  # fmt: skip
    return {
        "settings": {"rounds": args.rounds, "batch": args.batch, "latency_s": args.latency},
        "checks": [
            {"check": what, "measured": measured, "aim": aim, "pass": holds}
            for what, measured, aim, holds in checks
        ],
        "live_runs_at_kills": dict(at_kills),
        "runs_killed": sum(1 for row in rows if row["kills"]),
        "resume_s": {
            "n": len(resume_times),
            "p50": round(statistics.median(resume_times), 2) if resume_times else None,
            "max": round(max(resume_times), 2) if resume_times else None,
        },
        "kills_not_resumed": sum(len(r.kills) for r in accepted) - len(resume_times),
        "refused": dict(Counter(r.refused for r in runs if r.refused)),
        "rounds": placements,
        "runs": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"{'check':<28}{'measured':<62}{'aim':<26}result"]
    for c in result["checks"]:
        verdict = "PASS" if c["pass"] else "FAIL"
        lines.append(f"{c['check']:<28}{c['measured']:<62}{c['aim']:<26}{verdict}")
    resume = result["resume_s"]
    lines += [
        "",
        f"live runs at the kills: {result['live_runs_at_kills']} "
        f"(runs killed on their replica: {result['runs_killed']})",
        f"kill → execution_resumed: {resume['n']} resumptions, p50 {resume['p50']} s, max "
        f"{resume['max']} s; kills never followed by one: {result['kills_not_resumed']}",
    ]
    failing = [
        r for r in result["runs"]
        if r["state"] != "completed" or not (r["in_call_bound"] and r["post_ok"])
        or r["log"] != "ok" or r["follower"] != "ok"
    ]  # fmt: skip
    lines.append(f"runs with a failure: {len(failing)}{', e.g.:' if failing else ''}")
    for r in failing[:6]:
        lines.append(
            f"  {r['run']} ({r['mode']}, {r['state']}): {r['provider_calls']} provider calls, "
            f"{r['kills']} kills, {r['resumed']} resumed, POST applied {r['posts_applied']}x, "
            f"log {r['log']}, follower {r['follower']}{'; ' if r['error'] else ''}{r['error']}"
        )
    if result["refused"]:
        lines.append(f"refused: {result['refused']}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None  # SIGTERM stops everything, as Ctrl-C does
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    ledger = Ledger(args.latency)
    app = web.Application()
    app.router.add_post("/apply", ledger.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ledger_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        with (
            tempfile.TemporaryDirectory(prefix="agentflow-bench-crash-") as folder,
            EmbeddedPostgres(Path(folder), delete=True) as server_dsn,
            EmbeddedValkey(Path(folder), persist=False) as valkey_url,
            FakeProviderServer(latency=args.latency) as provider,
        ):
            dsn = await create_database(server_dsn, "bench_crash")
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
                redis_prefix=PREFIX,
                workers=8,
                job_visibility_timeout=2,
                log_level="WARNING",
                tenant_requests_per_second=0,
                key_requests_per_second=0,
                tenant_max_concurrent_executions=0,
            )
            with Replicas(environment, args.logs or Path(folder) / "logs") as replicas:
                replicas.start(2)
                outcome = await soak(args, replicas, key, valkey_url, (provider.url, ledger_url))
                try:
                    return await report(args, outcome, provider, ledger)
                finally:
                    await outcome[-1].close()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10, help="runs a round, half streamed")
    parser.add_argument("--latency", type=float, default=0.3, help="s a provider call, a POST")
    parser.add_argument("--wait", type=float, default=90.0, help="s all runs get to end")
    parser.add_argument("--logs", type=Path, help="keep the replicas' logs in this directory")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args()
    configure_logging("WARNING")
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # callers gone at a kill
    began = time.perf_counter()
    try:
        result = asyncio.run(main_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.exit(130)
    result["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result, indent=2) if args.json else table(result))
    print(f"({result['seconds']:.0f} s)", file=sys.stderr)
    sys.exit(0 if all(c["pass"] for c in result["checks"]) else 1)


if __name__ == "__main__":
    main()
