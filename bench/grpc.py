"""Benchmark: the gRPC API end to end, over loopback, on a throw-away embedded PostgreSQL.

    python bench/grpc.py [--gets 2000] [--concurrency 10] [--levels 1,10,50]
                         [--executions 20,100,200] [--latency 0.05] [--pool 20] [--profile]

Everything is started here and stopped at the end: an embedded PostgreSQL in a temporary
directory (a fresh database, default server settings: fsync and synchronous commit on), the fake
OpenAI-compatible provider (`FakeProviderServer`, every request answered after `--latency`
seconds, 50 ms), and, in a child process of its own, the server: `open_app(migrate=True)` on that
database (pool of `--pool` connections), `ApiServer` on 127.0.0.1 (a free port), one tenant and an
editor API key. This process is the outside world: the client, on one `grpc.aio` channel with
the generated stubs and the key as `x-api-key`, and the provider. Through the API it creates an
`openai` source `openai-main` on the provider and a workflow: an input node, then one streaming
llm node on `openai-main` (the output is its text).

(a) GetWorkflow latency: `--gets` calls one after another (p50, p99, max), then as many from
    `--concurrency` tasks at once (p50, p99, requests/s); each after a warm-up of 200 calls. For
    comparison, the server's share without gRPC: authenticating the key and `workflows.get` in
    the server process (the two transactions every GetWorkflow makes).
(b) Streamed executions: ExecuteWorkflow of the stored workflow, every event read up to the
    terminal one, by 1, 10 and 50 concurrent callers (`--levels`), each level running a fixed
    number of executions (`--executions`: 20, 100, 200) after a warm-up round: executions/s,
    p50/p99 of one execution's wall time (call to terminal event), p50 time to the first event.
    What bounds a run: the provider's latency (one llm call per run, 50 ms) and its database
    writes (each a transaction with a synchronous commit: the execution record, then the event
    log in a few batched appends; the terminal event waits for the log to be stored), plus the
    server's CPU per run, which with enough callers is the limit: one Python process serves them
    all. At concurrency 1 the median run is split into its phases (from the events' server
    times).

Each phase also reports CPU time per call or run: of the server process, of this process (client
and provider) and of PostgreSQL (all its processes; Linux only). The figures are informative (the
issue asks for them, no aims), with one sanity aim: at concurrency 10 the server finishes at least
5x the executions/s of concurrency 1, i.e. runs overlap instead of queuing. Client, server,
provider and PostgreSQL share the machine (2 cores here): compare runs on a quiet one.
`--profile` ends with a cProfile of the server process over 500 GetWorkflow calls and over 40
executions at concurrency 10.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# This file is named grpc.py and Python puts its directory first on sys.path, where `import
# grpc` (here and in every library) would find this file instead of the package.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
# The embedded PostgreSQL is started and stopped with subprocesses; gRPC's fork handlers would
# only warn about the client's threads, and the children exec at once.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import base64
import contextlib
import cProfile
import io
import json
import multiprocessing
import pstats
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import asyncpg
import grpc
from google.protobuf import struct_pb2
from pydantic import SecretStr

from agentflow_grpc._gen.agentflow.v1 import (
    execution_pb2,
    execution_pb2_grpc,
    source_pb2,
    source_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from agentflow_grpc.api.server import ApiServer
from agentflow_grpc.app import App, open_app
from agentflow_grpc.cli.serve import serve_metrics
from agentflow_grpc.config import Settings
from agentflow_grpc.devstack.postgres import EmbeddedPostgres, create_database
from agentflow_grpc.model.records import Role
from agentflow_grpc.observability.logging import configure_logging
from agentflow_grpc.testing import FakeProviderServer

OVERLAP_AIM = 5.0  # concurrency-10 executions/s over concurrency-1 executions/s
ACTOR = "operator:bench"
GET_WARMUP = 200
PROFILE_GETS, PROFILE_RUNS, PROFILE_LEVEL = 500, 40, 10
SPEC: dict[str, Any] = {
    "api_version": "agentflow/v1",
    "name": "bench-grpc",
    "inputs": {"question": {"type": "string", "default": "How fast is the API?"}},
    "outputs": {"answer": {"from": "nodes.answer.output.text"}},
    "nodes": [
        {"id": "question", "type": "input"},
        {
            "id": "answer",
            "type": "llm",
            "source": "openai-main",
            "config": {"prompt": "Answer briefly: {{ inputs.question }}"},
        },
    ],
    "edges": [{"from": "question", "to": "answer"}],
}
TERMINAL = frozenset({"execution_completed", "execution_failed", "execution_cancelled"})


@dataclass
class Row:
    figure: str
    measured: str
    aim: str
    passed: bool | None  # None: informative only

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "MISS")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, round(share * len(values)) - 1))]


def struct(document: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(document)
    return message


# --- the server, in a child process --------------------------------------------------------


def serve(dsn: str, pool: int, log_path: str, commands: Connection, metrics: bool = False) -> None:
    """The child process: the app and the gRPC server, until told to stop; with `metrics`, its
    Prometheus endpoint too (on a free port, reported as `metrics_url`). Traces follow the
    OTEL_* variables of the environment it was started in."""
    with open(log_path, "w", encoding="utf-8") as log:
        configure_logging("INFO", "json", stream=log)  # the server's default level
        asyncio.run(_serve(dsn, pool, commands, metrics))


async def _serve(dsn: str, pool: int, commands: Connection, metrics: bool) -> None:
    settings = Settings(
        database_url=SecretStr(dsn),
        secret_keys=SecretStr("bench:" + base64.b64encode(os.urandom(32)).decode()),
        grpc_port=0,
        database_pool_min=pool,
        database_pool_max=pool,
        # The bench measures the server, not its limits: one tenant's calls, unthrottled.
        tenant_requests_per_second=0,
        key_requests_per_second=0,
        tenant_max_concurrent_executions=0,
        metrics_port=0 if metrics else -1,
    )
    async with open_app(settings, migrate=True) as app, serve_metrics(app) as exposition:
        server = await ApiServer.start(
            app, host="127.0.0.1", port=0, max_message_bytes=settings.max_message_bytes
        )
        try:
            await app.tenants.create_tenant("bench", actor=ACTOR)
            _, key = await app.tenants.create_api_key("bench", role=Role.EDITOR, actor=ACTOR)
            commands.send(
                {
                    "address": server.address,
                    "key": key,
                    "metrics_url": None if exposition is None else exposition.url,
                    "settings": (
                        f"database pool {settings.database_pool_min}..{settings.database_pool_max}"
                        f" connections (acquire timeout {settings.database_acquire_timeout:g} s), "
                        f"compiled-graph cache {settings.compiled_cache_size}, max message "
                        f"{settings.max_message_bytes:,} bytes, log level {settings.log_level} "
                        "(json, to a file)"
                    ),
                }
            )
            profiler: cProfile.Profile | None = None
            while True:
                try:
                    command, *arguments = await asyncio.to_thread(commands.recv)
                except EOFError:  # the benchmark went away
                    break
                if command == "stop":
                    break
                if command == "cpu":
                    commands.send(time.process_time())
                elif command == "profile":
                    profiler = cProfile.Profile()
                    profiler.enable()
                    commands.send(None)
                elif command == "report" and profiler is not None:
                    profiler.disable()
                    commands.send(_report(profiler, *arguments))
                elif command == "dump" and profiler is not None:  # to a file, for pstats
                    profiler.disable()
                    profiler.dump_stats(*arguments)
                    commands.send(None)
                elif command == "service-gets":
                    commands.send(await _service_gets(app, *arguments))
        finally:
            await server.stop(settings.shutdown_grace)


async def _service_gets(app: App, key: str, name: str, count: int) -> tuple[list[float], float]:
    """What GetWorkflow costs in the server without gRPC: authenticate, then workflows.get.
    Each call's latency in ms (sorted), and this process's CPU seconds per call."""
    workflow_id = uuid.UUID(name.removeprefix("workflows/"))

    async def one() -> float:
        started = time.perf_counter()
        principal = await app.tenants.authenticate(key)
        await app.workflows.get(principal, workflow_id)
        return (time.perf_counter() - started) * 1000

    for _ in range(GET_WARMUP):
        await one()
    cpu = time.process_time()
    times = [await one() for _ in range(count)]
    return sorted(times), (time.process_time() - cpu) / count


def _report(profiler: cProfile.Profile, title: str) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"\nprofile (server process): {title}, by internal time\n")
    stats.sort_stats("tottime").print_stats(18)
    out.write(f"profile (server process): {title}, AgentFlow's functions by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(r"agentflow_grpc/(?!_gen)", 22)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip()) + "\n"


class ServerProcess:
    """The child process and its command pipe."""

    def __init__(self, dsn: str, pool: int, log_path: Path, *, metrics: bool = False) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(
            target=serve,
            args=(dsn, pool, str(log_path), child, metrics),
            name="agentflow-server",
        )
        self.process.start()
        child.close()
        try:
            if not self._pipe.poll(120):
                raise RuntimeError("the server did not start within 120 s")
            ready = self._pipe.recv()
        except (EOFError, RuntimeError) as exc:
            self.process.kill()
            self.process.join()
            tail = log_path.read_text(encoding="utf-8")[-2000:] if log_path.exists() else ""
            raise RuntimeError(
                f"the server process failed to start (exit code {self.process.exitcode}); "
                f"the end of its log:\n{tail}"
            ) from exc
        self.address: str = ready["address"]
        self.key: str = ready["key"]
        self.settings: str = ready["settings"]
        self.metrics_url: str | None = ready["metrics_url"]

    async def ask(self, *command: Any) -> Any:
        def exchange() -> Any:
            self._pipe.send(command)
            return self._pipe.recv()

        return await asyncio.to_thread(exchange)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._pipe.send(("stop",))
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
            raise RuntimeError("the server did not stop within 30 s")


# --- CPU accounting ------------------------------------------------------------------------


def postgres_cpu(data_directory: Path) -> float | None:
    """CPU seconds used so far by the PostgreSQL server: the postmaster and its children
    (backends, WAL writer, checkpointer). None where /proc is not there."""
    try:
        postmaster = int((data_directory / "postmaster.pid").read_text().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rpartition(")")[2].split()
                pid, parent = int(stat.parent.name), int(fields[1])
                if postmaster in (pid, parent):
                    total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Cpu:
    """CPU seconds per operation over one measured phase."""

    server: float
    here: float  # this process: the client and the fake provider
    postgres: float | None

    def describe(self) -> str:
        """Per call, in microseconds."""
        database = "n/a" if self.postgres is None else f"{self.postgres * 1e6:,.0f}"
        return (
            f"CPU per call: server {self.server * 1e6:,.0f} µs, client+provider "
            f"{self.here * 1e6:,.0f} µs, PostgreSQL {database} µs"
        )


class Meter:
    def __init__(self, server: ServerProcess, data_directory: Path) -> None:
        self._server = server
        self._data = data_directory
        self._start: tuple[float, float, float | None] = (0.0, 0.0, None)

    async def _now(self) -> tuple[float, float, float | None]:
        return await self._server.ask("cpu"), time.process_time(), postgres_cpu(self._data)

    async def start(self) -> None:
        self._start = await self._now()

    async def per(self, count: int) -> Cpu:
        server, here, database = await self._now()
        first = self._start
        return Cpu(
            (server - first[0]) / count,
            (here - first[1]) / count,
            None if database is None or first[2] is None else (database - first[2]) / count,
        )


# --- the client's side ---------------------------------------------------------------------


@dataclass
class Bench:
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...]
    workflow: str  # its resource name, workflows/<id>
    server: ServerProcess
    meter: Meter
    workflows: workflow_pb2_grpc.WorkflowServiceStub = field(init=False)
    executions: execution_pb2_grpc.ExecutionServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.workflows = workflow_pb2_grpc.WorkflowServiceStub(self.channel)
        self.executions = execution_pb2_grpc.ExecutionServiceStub(self.channel)


async def server_settings(dsn: str) -> str:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY ($1) ORDER BY name",
            ["fsync", "synchronous_commit", "max_connections", "shared_buffers"],
        )
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    settings = ", ".join(f"{r['name']}={r['setting']}{r['unit'] or ''}" for r in rows)
    return f"PostgreSQL {version}; {settings}"


@asynccontextmanager
async def running(args: argparse.Namespace, home: Path) -> AsyncIterator[Bench]:
    """PostgreSQL, the provider and the server; then the source and the workflow, created
    through the API. All stopped on the way out."""
    postgres = EmbeddedPostgres(home, delete=True)
    with postgres as server_dsn, FakeProviderServer(latency=args.latency) as provider:
        dsn = await create_database(server_dsn, "bench")
        print(await server_settings(dsn))
        server = ServerProcess(dsn, args.pool, home / "server.log")
        try:
            print(f"server {server.address} (pid {server.process.pid}): {server.settings}")
            print(f"provider {provider.url}: {args.latency * 1000:g} ms per request")
            metadata = (("x-api-key", server.key),)
            async with grpc.aio.insecure_channel(server.address) as channel:
                await source_pb2_grpc.SourceServiceStub(channel).CreateSource(
                    source_pb2.CreateSourceRequest(
                        source=source_pb2.Source(
                            display_name="openai-main",
                            type="openai",
                            config=struct(
                                {"base_url": f"{provider.url}/v1", "model": "fake-model"}
                            ),
                            secrets={"api_key": "sk-bench"},
                        )
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                workflow = await workflow_pb2_grpc.WorkflowServiceStub(channel).CreateWorkflow(
                    workflow_pb2.CreateWorkflowRequest(
                        workflow=workflow_pb2.Workflow(spec=struct(SPEC))
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                meter = Meter(server, postgres.data_directory)
                yield Bench(channel, metadata, workflow.name, server, meter)
        finally:
            server.stop()
        print(server_log(home / "server.log"))


def server_log(path: Path) -> str:
    """What the server logged: its calls by status, and its warnings and errors."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    codes = Counter(str(r.get("code")) for r in records if r.get("event") == "rpc")
    bad = [r for r in records if r.get("level") in ("warning", "error", "critical")]
    calls = ", ".join(f"{code} {count:,}" for code, count in sorted(codes.items()))
    lines = "".join(f"\n  {json.dumps(record)[:300]}" for record in bad[:5])
    return f"\nserver log: calls by status: {calls}; {len(bad)} warnings or errors{lines}"


# --- (a) GetWorkflow -----------------------------------------------------------------------


async def get_calls(bench: Bench, count: int) -> list[float]:
    """`count` GetWorkflow calls one after another; each one's latency in ms."""
    request = workflow_pb2.GetWorkflowRequest(name=bench.workflow)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        workflow = await bench.workflows.GetWorkflow(request, metadata=bench.metadata, timeout=10)
        times.append((time.perf_counter() - started) * 1000)
        if workflow.name != bench.workflow:
            raise RuntimeError(f"GetWorkflow returned {workflow.name}")
    return times


async def get_latency(args: argparse.Namespace, bench: Bench) -> list[Row]:
    size = len(json.dumps(SPEC))
    print(
        f"\n(a) GetWorkflow over gRPC (one channel, loopback, a {size}-byte spec); ms, after "
        f"{GET_WARMUP} warm-up calls"
    )
    await get_calls(bench, GET_WARMUP)
    await bench.meter.start()
    started = time.perf_counter()
    sequential = sorted(await get_calls(bench, args.gets))
    rate = args.gets / (time.perf_counter() - started)
    sequential_cpu = await bench.meter.per(args.gets)
    p50, p99 = percentile(sequential, 0.50), percentile(sequential, 0.99)
    print(
        f"  sequential      {args.gets} calls: p50 {p50:.3f}  p99 {p99:.3f}  "
        f"max {sequential[-1]:.3f}  ({rate:,.0f} requests/s)\n"
        f"    {sequential_cpu.describe()}"
    )
    service, service_cpu = await bench.server.ask(
        "service-gets", bench.metadata[0][1], bench.workflow, 1000
    )
    s50, s99 = percentile(service, 0.50), percentile(service, 0.99)
    print(
        f"  without gRPC    in the server process: authenticate + workflows.get (two\n"
        f"                  transactions), 1000 calls: p50 {s50:.3f}  p99 {s99:.3f}; CPU per "
        f"call: server {service_cpu * 1e6:,.0f} µs"
    )

    tasks = args.concurrency
    await asyncio.gather(*(get_calls(bench, GET_WARMUP // tasks) for _ in range(tasks)))
    await bench.meter.start()
    started = time.perf_counter()
    per_task = await asyncio.gather(*(get_calls(bench, args.gets // tasks) for _ in range(tasks)))
    wall = time.perf_counter() - started
    together = sorted(t for times in per_task for t in times)
    cpu = await bench.meter.per(len(together))
    c50, c99 = percentile(together, 0.50), percentile(together, 0.99)
    concurrent_rate = len(together) / wall
    print(
        f"  {tasks} at once     {len(together)} calls: p50 {c50:.3f}  p99 {c99:.3f}  "
        f"max {together[-1]:.3f}  ({concurrent_rate:,.0f} requests/s)\n"
        f"    {cpu.describe()}"
    )
    return [
        Row("(a) GetWorkflow, sequential: p50", f"{p50:.3f} ms", "info", None),
        Row(
            "(a) GetWorkflow, sequential: p99 (max)",
            f"{p99:.3f} ms ({sequential[-1]:.2f})",
            "info",
            None,
        ),
        Row(
            "(a) GetWorkflow, sequential: server CPU per call",
            f"{sequential_cpu.server * 1e3:.2f} ms",
            "info",
            None,
        ),
        Row(
            "(a) auth + workflows.get alone, in the server: p50",
            f"{s50:.3f} ms (CPU {service_cpu * 1e3:.2f} ms)",
            "info",
            None,
        ),
        Row(
            f"(a) GetWorkflow, {tasks} concurrent: p50 / p99",
            f"{c50:.2f} / {c99:.2f} ms",
            "info",
            None,
        ),
        Row(
            f"(a) GetWorkflow, {tasks} concurrent: throughput",
            f"{concurrent_rate:,.0f} requests/s",
            "info",
            None,
        ),
    ]


# --- (b) ExecuteWorkflow -------------------------------------------------------------------


@dataclass
class Run:
    wall: float  # seconds, call to terminal event
    first: float  # seconds, call to first event
    events: int
    phases: dict[str, float]  # seconds, see `phases()`


def phases(
    started: float, events: list[tuple[float, execution_pb2.ExecutionEvent]]
) -> dict[str, float]:
    """One run cut into phases, by the server's event times (same clock: same machine)."""

    def server_time(kind: str, node: str = "") -> float:
        for _, event in events:
            if event.type == kind and (not node or event.node_id == node):
                return event.time.seconds + event.time.nanos / 1e9
        return float("nan")

    first_token = server_time("node_token")
    last_token = max(
        (e.time.seconds + e.time.nanos / 1e9 for _, e in events if e.type == "node_token"),
        default=float("nan"),
    )
    return {
        "call → execution_started": server_time("execution_started") - started,
        "→ llm node_started": server_time("node_started", "answer")
        - server_time("execution_started"),
        "→ first token": first_token - server_time("node_started", "answer"),
        "→ last token": last_token - first_token,
        "→ node_completed": server_time("node_completed", "answer") - last_token,
        "→ terminal event received": events[-1][0] - server_time("node_completed", "answer"),
    }


async def execute_once(bench: Bench) -> Run:
    request = execution_pb2.ExecuteWorkflowRequest(workflow=bench.workflow)
    wall_clock, started = time.time(), time.perf_counter()
    seen: list[tuple[float, execution_pb2.ExecutionEvent]] = []
    call = bench.executions.ExecuteWorkflow(request, metadata=bench.metadata, timeout=120)
    async for event in call:
        seen.append((wall_clock + time.perf_counter() - started, event))
        if event.type in TERMINAL:
            break
    wall = time.perf_counter() - started
    last = seen[-1][1].type if seen else "no event"
    if last != "execution_completed":
        raise RuntimeError(f"the execution ended with {last}: {seen[-1][1] if seen else ''}")
    return Run(wall, seen[0][0] - wall_clock, len(seen), phases(wall_clock, seen))


async def execute_level(bench: Bench, level: int, total: int) -> tuple[float, list[Run]]:
    """`total` executions by `level` concurrent callers: the wall time, and each run."""
    runs: list[Run] = []
    remaining = total

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            runs.append(await execute_once(bench))

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(level)))
    return time.perf_counter() - started, runs


async def executions(args: argparse.Namespace, bench: Bench) -> list[Row]:
    print(
        f"\n(b) ExecuteWorkflow, streamed to the terminal event (input → 1 streaming llm node, "
        f"provider {args.latency * 1000:g} ms)\n    after a warm-up round per level"
    )
    print(
        f"  {'callers':>8}{'runs':>6}{'runs/s':>9}{'p50':>10}{'p99':>10}{'1st event':>11}"
        f"{'events':>8}   CPU per run: server / client+provider / PostgreSQL"
    )
    rates: dict[int, float] = {}
    rows: list[Row] = []
    single: list[Run] = []
    server_cpu: dict[int, float] = {}
    for level, total in zip(args.levels, args.executions, strict=True):
        await execute_level(bench, level, level)  # warm-up: connections, caches
        await bench.meter.start()
        wall, runs = await execute_level(bench, level, total)
        cpu = await bench.meter.per(total)
        rate = rates[level] = total / wall
        server_cpu[level] = cpu.server
        times = sorted(run.wall * 1000 for run in runs)
        first = statistics.median(run.first * 1000 for run in runs)
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        database = "n/a" if cpu.postgres is None else f"{cpu.postgres * 1000:.1f}"
        print(
            f"  {level:>8}{total:>6}{rate:>9.1f}{p50:>7.1f} ms{p99:>7.1f} ms{first:>8.1f} ms"
            f"{statistics.median(run.events for run in runs):>8.0f}   {cpu.server * 1000:.1f} / "
            f"{cpu.here * 1000:.1f} / {database} ms"
        )
        if level == 1:
            single = runs
        rows += [
            Row(
                f"(b) executions, concurrency {level}: runs/s",
                f"{rate:.1f}/s (p50 {p50:.0f}, p99 {p99:.0f} ms)",
                "info",
                None,
            ),
            Row(
                f"(b) executions, concurrency {level}: 1st event p50",
                f"{first:.1f} ms",
                "info",
                None,
            ),
        ]
    print(
        "  runs/s: executions finished per second of wall time; p50/p99: one execution, call to\n"
        "  terminal event; 1st event: call to the first event (execution_started)"
    )
    if single:
        print("  concurrency 1, median of each phase (by the events' server times; ms):")
        for phase in single[0].phases:
            median = statistics.median(run.phases[phase] for run in single) * 1000
            print(f"    {phase:<28}{median:>7.1f}")
    rows.append(
        Row(
            "(b) server CPU per execution, concurrency " + "/".join(map(str, server_cpu)),
            " / ".join(f"{seconds * 1000:.0f}" for seconds in server_cpu.values()) + " ms",
            "info",
            None,
        )
    )
    if 1 in rates and 10 in rates:
        ratio = rates[10] / rates[1]
        rows.append(
            Row(
                "(b) runs/s, concurrency 10 over 1",
                f"{ratio:.1f}x",
                f">= {OVERLAP_AIM:g}x",
                ratio >= OVERLAP_AIM,
            )
        )
    return rows


async def profile(bench: Bench) -> str:
    """cProfile of the server process: GetWorkflow calls, then concurrent executions."""
    await bench.server.ask("profile")
    await get_calls(bench, PROFILE_GETS)
    report = await bench.server.ask("report", f"{PROFILE_GETS} sequential GetWorkflow calls")
    await bench.server.ask("profile")
    await execute_level(bench, PROFILE_LEVEL, PROFILE_RUNS)
    title = f"{PROFILE_RUNS} executions at concurrency {PROFILE_LEVEL}"
    return str(report) + str(await bench.server.ask("report", title))


async def main_async(args: argparse.Namespace) -> list[Row]:
    configure_logging("WARNING")  # not the embedded server's start and stop lines
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-") as home:
        async with running(args, Path(home)) as bench:
            rows = await get_latency(args, bench)
            rows += await executions(args, bench)
            if args.profile:
                print(await profile(bench))
    return rows


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=2000, help="GetWorkflow calls per run")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="concurrent GetWorkflow callers"
    )
    parser.add_argument(
        "--levels", type=numbers, default=[1, 10, 50], help="concurrent callers, per level"
    )
    parser.add_argument(
        "--executions", type=numbers, default=[20, 100, 200], help="executions, per level"
    )
    parser.add_argument("--latency", type=float, default=0.05, help="provider latency, seconds")
    parser.add_argument("--pool", type=int, default=20, help="the server's database pool size")
    parser.add_argument(
        "--profile", action="store_true", help="end with a cProfile of the server process"
    )
    args = parser.parse_args()
    if len(args.levels) != len(args.executions):
        parser.error("--levels and --executions need as many numbers")
    started = time.perf_counter()
    rows = asyncio.run(main_async(args))
    width = max(len(row.figure) for row in rows) + 2
    measured = max(len(row.measured) for row in rows) + 2
    aim = max(len(row.aim) for row in rows) + 2
    print(f"\n{'figure':<{width}}{'measured':<{measured}}{'aim':<{aim}}result")
    for row in rows:
        print(f"{row.figure:<{width}}{row.measured:<{measured}}{row.aim:<{aim}}{row.verdict}")
    print("info: reported, no aim (the issue asks for the figures); the aim: runs overlap")
    print(f"(benchmark took {time.perf_counter() - started:.1f} s, server start included)")


if __name__ == "__main__":
    main()
