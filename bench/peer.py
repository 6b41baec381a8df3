"""Benchmark: AgentFlow against its peer, LangGraph's Agent Server, side by side in one run.

    python bench/peer.py [--graphs chain5,fanout4] [--clients 1,50] [--runs 200] [--runs-c1 50]
                         [--latency-ms 50] [--processes 1,2] [--no-peer] [--modes streamed,plain]
                         [--profile DIR]

The peer is `../shared/peer-bench` (or `PEER_BENCH`): its pinned venv (`PEER_VENV`, default
/tmp/peer-venv, made by its `setup.sh` on first use), its fake OpenAI-compatible server, its
graphs and its closed-loop SSE driver (`load.py`). Both servers call the same fake server, which
answers every chat completion after `--latency-ms` (50 ms).

- llm1 (AgentFlow alone): an input node and one llm node; with `--latency-ms 5000 --clients
  1000 --runs 1000` it holds 1,000 streaming runs open at once (`--max-running 1000`).
- chain5: five llm calls one after another (AgentFlow: an input node, then 5 llm nodes);
  fanout4: four llm calls in parallel, joined (AgentFlow: input → 4 llm nodes → an `object`
  aggregator; the peer: prep → 4 → aggregate).
- The peer: a fresh `langgraph dev` (in-memory runtime, 50 jobs per worker) per cell, driven by
  `load.py` (POST /runs/stream, stream_mode updates).
- AgentFlow: a fresh `agentflow serve` per cell (`--processes` when given) on one embedded
  PostgreSQL and one embedded Valkey, every event persisted; `ExecuteWorkflow` over gRPC from a
  closed loop of `--clients` callers in this process, each run read to its terminal event. Modes:
  `streamed` (llm nodes stream tokens, the default) and `plain` (`stream: false`).

Per cell: runs/s, p50 of a run (request → stream end), p50 of the first event, server CPU per
run (the server's process tree, over the measured window) and its peak RSS. Ends with the table
and the ratios AgentFlow / peer. The floor of chain5 is 5 times the latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)  # bench/grpc.py is not the grpc package

import grpc  # noqa: E402
import psutil  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402

from agentflow_grpc._gen.agentflow.v1 import (  # noqa: E402
    execution_pb2,
    execution_pb2_grpc,
    source_pb2,
    source_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from agentflow_grpc.devstack.postgres import EmbeddedPostgres, create_database  # noqa: E402
from agentflow_grpc.devstack.valkey import EmbeddedValkey  # noqa: E402
from agentflow_grpc.observability.logging import configure_logging  # noqa: E402

ROOT = HERE.parent
PEER = Path(os.environ.get("PEER_BENCH", ROOT.parent / "shared" / "peer-bench"))
PEER_VENV = Path(os.environ.get("PEER_VENV", "/tmp/peer-venv"))
AGENTFLOW = Path(sys.executable).parent / "agentflow"
TERMINAL = {"execution_completed", "execution_failed", "execution_cancelled"}
QUIET_PEER = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "1",
    "DO_NOT_TRACK": "1",
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
}


@dataclass
class Cell:
    server: str  # "peer", "agentflow", "agentflow plain"
    graph: str
    clients: int
    runs: int
    errors: int
    runs_per_second: float
    p50_ms: float
    first_event_p50_ms: float
    cpu_ms_per_run: float
    peak_rss_mb: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we started, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def started(command: list[str], **options: Any) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, start_new_session=True, **options)
    try:
        yield process
    finally:
        stop(process)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


# --- the peer -------------------------------------------------------------------------------


def ensure_peer() -> None:
    if not (PEER / "load.py").exists():
        raise SystemExit(f"no peer benchmark at {PEER} (set PEER_BENCH, or pass --no-peer)")
    if not (PEER_VENV / "bin" / "langgraph").exists():
        print(f"setting up the peer's venv in {PEER_VENV} (its setup.sh, pinned)", flush=True)
        subprocess.run(
            ["bash", str(PEER / "setup.sh")],
            check=True,
            env={**os.environ, "LOCK": "1", "PEER_VENV": str(PEER_VENV)},
        )


def peer_cell(graph: str, clients: int, runs: int, fake_url: str, logs: Path) -> Cell:
    port = free_port()
    env = {**os.environ, **QUIET_PEER, "FAKE_OPENAI_BASE_URL": f"{fake_url}/v1"}
    command = [
        str(PEER_VENV / "bin" / "langgraph"), "dev", "--no-browser", "--no-reload",
        "--host", "127.0.0.1", "--port", str(port), "--n-jobs-per-worker", "50",
    ]  # fmt: skip
    log = (logs / f"peer-{graph}-{clients}.log").open("wb")
    with log, started(command, cwd=PEER / "langgraph_app", env=env, stdout=log, stderr=log) as lg:
        wait_http(f"http://127.0.0.1:{port}/ok", lg, 120)
        driver = subprocess.run(
            [
                str(PEER_VENV / "bin" / "python"), str(PEER / "load.py"),
                "--url", f"http://127.0.0.1:{port}", "--graph", graph, "-c", str(clients),
                "-n", str(runs), "--mode", "stateless", "--server-pid", str(lg.pid),
            ],
            check=True,
            capture_output=True,
            env=env,
        )  # fmt: skip
    result = json.loads(driver.stdout.decode().strip().splitlines()[-1])
    return Cell(
        "peer",
        graph,
        clients,
        result["n"],
        result["errors"],
        result["runs_per_s"],
        result["total_ms"]["p50"],
        result["ttfe_ms"]["p50"],
        result["server_cpu_ms_per_run"],
        result["server_peak_rss_mb"],
    )


# --- AgentFlow ------------------------------------------------------------------------------


CONNECTIONS = 8  # gRPC connections the callers share
PEER_GRAPHS = ("chain5", "fanout4")  # what the peer has; llm1 is AgentFlow's alone


def spec(graph: str, stream: bool) -> dict[str, Any]:
    def llm(node_id: str, prompt: str) -> dict[str, Any]:
        return {
            "id": node_id,
            "type": "llm",
            "source": "fake",
            "config": {"prompt": prompt, "stream": stream},
        }

    document: dict[str, Any] = {
        "api_version": "agentflow/v1",
        "name": f"peer-{graph}",
        "inputs": {"input": {"type": "string", "default": "run"}},
    }
    if graph == "llm1":  # AgentFlow alone: many runs held open at once (--latency-ms 5000)
        document["nodes"] = [{"id": "input", "type": "input"}, llm("llm1", "{{ inputs.input }}")]
        document["edges"] = [{"from": "input", "to": "llm1"}]
        document["outputs"] = {"reply": {"from": "nodes.llm1.output.text"}}
    elif graph == "chain5":
        names = [f"llm{i}" for i in range(1, 6)]
        document["nodes"] = [{"id": "input", "type": "input"}] + [
            llm(name, f"{{{{ inputs.input }}}}|{name}") for name in names
        ]
        chain = ["input", *names]
        document["edges"] = [{"from": a, "to": b} for a, b in itertools.pairwise(chain)]
        document["outputs"] = {"reply": {"from": "nodes.llm5.output.text"}}
    else:
        names = [f"llm_{letter}" for letter in "abcd"]
        document["nodes"] = [
            {"id": "input", "type": "input"},
            *(llm(name, f"{{{{ inputs.input }}}}|{name}") for name in names),
            {"id": "aggregate", "type": "aggregator", "config": {"strategy": "object"}},
        ]
        document["edges"] = [{"from": "input", "to": name} for name in names] + [
            {"from": name, "to": "aggregate"} for name in names
        ]
        document["outputs"] = {"summary": {"from": "nodes.aggregate.output"}}
    return document


def struct(document: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(document)
    return message


@dataclass
class AgentFlowStack:
    env: dict[str, str]
    key: str


@contextlib.contextmanager
def agentflow_stack(home: Path) -> Iterator[AgentFlowStack]:
    """Embedded PostgreSQL and Valkey, a migrated database, a tenant and an editor key."""
    with (
        EmbeddedPostgres(home, delete=True) as server_dsn,
        EmbeddedValkey(home, persist=False) as redis_url,
    ):
        dsn = asyncio.run(create_database(server_dsn, "peer_bench"))
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "REDIS_URL": redis_url,
            "AGENTFLOW_HOME": str(home),
            "AGENTFLOW_SECRET_KEYS": "bench:" + base64.b64encode(os.urandom(32)).decode(),
            "AGENTFLOW_LOG_LEVEL": "WARNING",
            # The server is measured, not its limits: one tenant's calls, unthrottled.
            "AGENTFLOW_TENANT_REQUESTS_PER_SECOND": "0",
            "AGENTFLOW_KEY_REQUESTS_PER_SECOND": "0",
            "AGENTFLOW_TENANT_MAX_CONCURRENT_EXECUTIONS": "0",
        }
        subprocess.run([str(AGENTFLOW), "migrate"], check=True, env=env, capture_output=True)
        subprocess.run(
            [str(AGENTFLOW), "tenant", "create", "bench"], check=True, env=env, capture_output=True
        )
        made = subprocess.run(
            [str(AGENTFLOW), "apikey", "create", "--tenant", "bench", "--role", "editor"],
            check=True,
            env=env,
            capture_output=True,
        )
        key = made.stdout.decode().split()[-1]
        yield AgentFlowStack(env, key)


@contextlib.contextmanager
def agentflow_server(
    stack: AgentFlowStack, processes: int, log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    command = [str(AGENTFLOW), "serve", "--port", "0", "--processes", str(processes)]
    with (
        log.open("wb") as errors,
        started(command, env=stack.env, stdout=subprocess.PIPE, stderr=errors) as server,
    ):
        assert server.stdout is not None
        line = server.stdout.readline().decode().strip()
        if not line.startswith("grpc://"):
            raise RuntimeError(f"agentflow serve said {line!r}; see {log}")
        yield server, line.removeprefix("grpc://")


@contextlib.contextmanager
def profiled(pid: int, directory: Path | None, cell: str) -> Iterator[None]:
    """py-spy sampling `pid` and its children while the block runs, into DIRECTORY/CELL.txt
    (collapsed stacks); nothing without a directory."""
    if directory is None:
        yield
        return
    output = directory / f"{cell}.txt"
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",  # never pauses the server: what it measures is what runs
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as spy:
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)  # it writes the profile and exits
            _, errors = spy.communicate(timeout=60)
    if not output.exists():
        raise RuntimeError(f"py-spy wrote no profile: {errors.decode(errors='replace')}")
    print(f"  profile: {output}", flush=True)


def tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    return []


def tree_cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def tree_rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 1048576


async def drive(
    address: str,
    key: str,
    workflow: str,
    clients: int,
    runs: int,
    server_pid: int,
    *,
    background: bool = False,
) -> tuple[list[tuple[float, float]], int, float, float, float]:
    """`runs` runs from `clients` callers in a closed loop — ExecuteWorkflow, or with
    `background` StartExecution then StreamExecution of it — : each run's (first event, total)
    in seconds, the errors, the wall time, the server's CPU seconds and peak RSS."""
    metadata = (("x-api-key", key),)
    # Several connections (each channel its own: a local subchannel pool), callers spread over
    # them: the kernel hands each connection to one server process (SO_REUSEPORT), so one
    # connection would reach one process of `--processes N` (docs/scaling.md).
    options = [("grpc.max_concurrent_streams", 1000), ("grpc.use_local_subchannel_pool", 1)]
    async with contextlib.AsyncExitStack() as channels:
        stubs = [
            execution_pb2_grpc.ExecutionServiceStub(
                await channels.enter_async_context(
                    grpc.aio.insecure_channel(address, options=options)
                )
            )
            for _ in range(CONNECTIONS)
        ]
        request = execution_pb2.ExecuteWorkflowRequest(workflow=workflow)
        start = execution_pb2.StartExecutionRequest(workflow=workflow)

        def events(stub: execution_pb2_grpc.ExecutionServiceStub) -> Any:
            if not background:
                return stub.ExecuteWorkflow(request, metadata=metadata, timeout=120)

            async def started() -> Any:
                execution = await stub.StartExecution(start, metadata=metadata, timeout=120)
                follow = execution_pb2.StreamExecutionRequest(name=execution.name)
                async for event in stub.StreamExecution(follow, metadata=metadata, timeout=120):
                    yield event

            return started()

        async def one(stub: execution_pb2_grpc.ExecutionServiceStub) -> tuple[float, float] | None:
            began = time.perf_counter()
            first: float | None = None
            last = ""
            async for event in events(stub):
                if first is None:
                    first = time.perf_counter() - began
                last = event.type
            if last != "execution_completed" or first is None:
                return None
            return first, time.perf_counter() - began

        warm_up = max(min(clients, 10), len(stubs))
        await asyncio.gather(*(one(stubs[n % len(stubs)]) for n in range(warm_up)))
        results: list[tuple[float, float]] = []
        errors = 0
        remaining = iter(range(runs))

        async def caller(stub: execution_pb2_grpc.ExecutionServiceStub) -> None:
            nonlocal errors
            for _ in remaining:
                try:
                    outcome = await one(stub)
                except grpc.aio.AioRpcError:
                    outcome = None
                if outcome is None:
                    errors += 1
                else:
                    results.append(outcome)

        processes = tree(server_pid)
        cpu = tree_cpu(processes)
        peak = tree_rss_mb(processes)
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak, processes
            while not done.is_set():
                processes = tree(server_pid) or processes
                peak = max(peak, tree_rss_mb(processes))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.25)

        sampler = asyncio.create_task(sample())
        began, client_began = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller(stubs[n % len(stubs)]) for n in range(clients)))
        wall = time.perf_counter() - began
        client_cpu = time.process_time() - client_began
        done.set()
        await sampler
        if results:  # the callers share the cores with the server: how much they took
            print(f"  client CPU {client_cpu * 1000 / len(results):.1f} ms/run", flush=True)
        return results, errors, wall, tree_cpu(processes) - cpu, peak


async def prepare(address: str, key: str, fake_url: str, graph: str, stream: bool) -> str:
    metadata = (("x-api-key", key),)
    async with grpc.aio.insecure_channel(address) as channel:
        sources = source_pb2_grpc.SourceServiceStub(channel)
        with contextlib.suppress(grpc.aio.AioRpcError):  # made by an earlier cell
            await sources.CreateSource(
                source_pb2.CreateSourceRequest(
                    source=source_pb2.Source(
                        display_name="fake",
                        type="openai",
                        config=struct({"base_url": f"{fake_url}/v1", "model": "fake-model"}),
                        secrets={"api_key": "sk-bench"},
                    )
                ),
                metadata=metadata,
                timeout=30,
            )
        workflow = await workflow_pb2_grpc.WorkflowServiceStub(channel).CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(
                workflow=workflow_pb2.Workflow(spec=struct(spec(graph, stream)))
            ),
            metadata=metadata,
            timeout=30,
        )
        return workflow.name


def agentflow_cell(
    stack: AgentFlowStack,
    args: argparse.Namespace,
    graph: str,
    clients: int,
    runs: int,
    fake_url: str,
    mode: str,
    processes: int,
    logs: Path,
) -> Cell:
    stream = mode != "plain"
    cell = f"agentflow-{graph}-{clients}-{mode}-x{processes}"
    log = logs / f"{cell}.log"
    if args.max_running is not None:
        stack = AgentFlowStack(
            {**stack.env, "AGENTFLOW_MAX_RUNNING_EXECUTIONS": str(args.max_running)}, stack.key
        )
    with agentflow_server(stack, processes, log) as (server, address):
        workflow = asyncio.run(prepare(address, stack.key, fake_url, graph, stream))
        with profiled(server.pid, args.profile, cell):
            results, errors, wall, cpu, peak = asyncio.run(
                drive(
                    address,
                    stack.key,
                    workflow,
                    clients,
                    runs,
                    server.pid,
                    background=mode == "background",
                )
            )
    totals = [total * 1000 for _, total in results]
    firsts = [first * 1000 for first, _ in results]
    name = {"streamed": "agentflow", "plain": "agentflow plain"}.get(mode, f"agentflow {mode}")
    if processes != 1:
        name += f" x{processes}"
    return Cell(
        name,
        graph,
        clients,
        len(results) + errors,
        errors,
        round(len(results) / wall, 1),
        round(percentile(totals, 0.5), 1) if totals else float("nan"),
        round(percentile(firsts, 0.5), 1) if firsts else float("nan"),
        round(cpu * 1000 / max(1, len(results)), 1),
        round(peak, 1),
    )


# --- the run ----------------------------------------------------------------------------------


def table(cells: list[Cell]) -> str:
    lines = [
        f"{'server':<22}{'graph':<9}{'clients':>8}{'runs':>6}{'err':>5}{'runs/s':>8}"
        f"{'p50 ms':>9}{'1st ev ms':>11}{'CPU ms/run':>12}{'RSS MB':>8}"
    ]
    for c in cells:
        lines.append(
            f"{c.server:<22}{c.graph:<9}{c.clients:>8}{c.runs:>6}{c.errors:>5}"
            f"{c.runs_per_second:>8.1f}{c.p50_ms:>9.1f}{c.first_event_p50_ms:>11.1f}"
            f"{c.cpu_ms_per_run:>12.1f}{c.peak_rss_mb:>8.0f}"
        )
    peers = {(c.graph, c.clients): c for c in cells if c.server == "peer"}
    ratios = []
    for c in cells:
        peer = peers.get((c.graph, c.clients))
        if c.server == "peer" or peer is None or not peer.runs_per_second:
            continue
        ratios.append(
            f"  {c.server} / peer, {c.graph} at {c.clients}: runs/s "
            f"{c.runs_per_second / peer.runs_per_second:.1f}x, server CPU per run "
            f"{c.cpu_ms_per_run / peer.cpu_ms_per_run:.2f}x"
        )
    if ratios:
        lines += ["", "ratios:", *ratios]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", default="chain5,fanout4", help="chain5, fanout4, llm1")
    parser.add_argument(
        "--max-running",
        type=int,
        help="AGENTFLOW_MAX_RUNNING_EXECUTIONS of the server (default: its own, 500)",
    )
    parser.add_argument("--clients", default="1,50", help="concurrent callers, per cell")
    parser.add_argument("--runs", type=int, default=200, help="runs per cell")
    parser.add_argument("--runs-c1", type=int, default=50, help="runs per cell with one client")
    parser.add_argument("--latency-ms", type=int, default=50, help="the fake server's delay")
    parser.add_argument(
        "--processes", default="1", help="agentflow serve --processes, a cell each (1,2)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="a py-spy profile of every AgentFlow cell's server (its processes) into this "
        "directory, as collapsed stacks (bench/stacks.py summarises one)",
    )
    parser.add_argument(
        "--modes",
        default="streamed,plain",
        help="AgentFlow's modes: streamed (ExecuteWorkflow, llm nodes stream), plain (stream: "
        "false), background (StartExecution + StreamExecution, streamed llm)",
    )
    parser.add_argument("--no-peer", action="store_true", help="AgentFlow only")
    args = parser.parse_args()
    configure_logging("WARNING")
    graphs = args.graphs.split(",")
    levels = [int(n) for n in args.clients.split(",")]
    modes = args.modes.split(",")
    counts = [int(n) for n in args.processes.split(",")]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    if not args.no_peer:
        ensure_peer()
    begun = time.perf_counter()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="agentflow-peer-") as directory:
        home = Path(directory)
        logs = home / "logs"
        logs.mkdir()
        fake_port = free_port()
        fake_python = PEER_VENV / "bin" / "python" if not args.no_peer else Path(sys.executable)
        fake_env = {**os.environ, "FAKE_LATENCY_MS": str(args.latency_ms)}
        fake = [str(fake_python), str(PEER / "fake_openai.py"), "--port", str(fake_port)]
        fake_url = f"http://127.0.0.1:{fake_port}"
        with started(fake, env=fake_env, stdout=subprocess.DEVNULL) as fake_server:
            wait_http(f"{fake_url}/health", fake_server, 30)
            print(f"fake OpenAI server {fake_url}: {args.latency_ms} ms per call", flush=True)
            with agentflow_stack(home) as stack:
                for graph in graphs:
                    for clients in levels:
                        runs = args.runs_c1 if clients == 1 else args.runs
                        if not args.no_peer and graph in PEER_GRAPHS:
                            cells.append(peer_cell(graph, clients, runs, fake_url, logs))
                            print(table(cells[-1:]).splitlines()[1], flush=True)
                        for mode, processes in itertools.product(modes, counts):
                            cells.append(
                                agentflow_cell(
                                    stack,
                                    args,
                                    graph,
                                    clients,
                                    runs,
                                    fake_url,
                                    mode,
                                    processes,
                                    logs,
                                )
                            )
                            print(table(cells[-1:]).splitlines()[1], flush=True)
        if any(cell.errors for cell in cells):
            for log in sorted(logs.iterdir()):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}")
    print()
    print(table(cells))
    floor = 5 * args.latency_ms
    chain = [c for c in cells if c.graph == "chain5" and c.server.startswith("agentflow")]
    if chain:
        best = min(c.p50_ms for c in chain if c.clients == 1) if levels[0] == 1 else None
        if best is not None:
            print(f"\nchain5 floor {floor} ms; AgentFlow at 1 client p50 {best:.1f} ms")
    print(f"(benchmark took {time.perf_counter() - begun:.0f} s)")


if __name__ == "__main__":
    main()
