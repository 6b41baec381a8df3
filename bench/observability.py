"""Benchmark: the cost of seeing — the server's CPU per execution with traces exported and
metrics served and scraped, against both off, measured in one run.

    python bench/observability.py [--runs 300] [--concurrency 10] [--rounds 5] [--warmup 100]
                                  [--latency 0.05] [--scrape 1.0] [--pool 20]

The set-up is `bench/grpc.py`'s (its server process, workflow and client are reused): an
embedded PostgreSQL in a temporary directory, the fake OpenAI-compatible provider answering
after `--latency` seconds, and the server in a child process; the workflow is an input node and
one streaming llm node. Two configurations, each a fresh server process on a fresh database:

- off: no `OTEL_EXPORTER_OTLP_ENDPOINT` (the tracer provider samples nothing, exports nothing)
  and `AGENTFLOW_METRICS_PORT=-1` (no `/metrics` endpoint). Metrics are still recorded in the
  process's registry: that is not a setting, and costs microseconds per run.
- on: every span sampled and exported over OTLP http/protobuf to a receiver in this process
  (`tests/support/otlp.py`), and `/metrics` served and scraped every `--scrape` seconds (a
  Prometheus server scrapes every 15 s by default: this is harsher).

Two more show where the cost is: `traces` (export only) and `metrics` (served and scraped
only). The modes (`--modes`, all four by default) take turns, `--rounds` times, so that drift on
a shared machine hits each alike. Each round: a warm-up of `--warmup` executions (100),
then `--runs` ExecuteWorkflow calls from `--concurrency` callers, each read to its terminal
event; the server process's CPU time over them, per run. Prints every round, the medians and
their growth over off (the median over rounds of each round's own growth, the modes of a round
running back to back), and the aim: on at most 5 % over off.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this directory is first on sys.path, where `import grpc` would find
# bench/grpc.py instead of the package.
HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)
sys.path.insert(0, str(HERE.parent))  # tests.support.otlp, the receiver

import os  # noqa: E402

# The embedded PostgreSQL is started with subprocesses and the servers are spawned: gRPC's fork
# handlers would only warn about this process's threads (as in bench/grpc.py).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from types import ModuleType  # noqa: E402

import grpc  # noqa: E402

from agentflow_grpc._gen.agentflow.v1 import (  # noqa: E402
    source_pb2,
    source_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from agentflow_grpc.devstack.postgres import EmbeddedPostgres, create_database  # noqa: E402
from agentflow_grpc.observability.logging import configure_logging  # noqa: E402
from agentflow_grpc.testing import FakeProviderServer  # noqa: E402
from tests.support.otlp import OtlpReceiver  # noqa: E402

AIM = 5.0  # % more server CPU per run, at most
# mode: (traces exported, metrics served and scraped)
MODES = {
    "off": (False, False),
    "traces": (True, False),
    "metrics": (False, True),
    "on": (True, True),
}
OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME")
# Every server process hashes alike: string hashing's random seed otherwise lays dicts and sets out
# differently in each one, which alone moves CPU per run by a few percent between processes.
SERVER_ENVIRONMENT = {"PYTHONHASHSEED": "0"}


def _load_grpc_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agentflow_bench_grpc", HERE / "grpc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


base = _load_grpc_bench()


@dataclass
class Round:
    mode: str  # a key of MODES
    cpu_ms: float  # server CPU per run
    runs_per_second: float
    spans_per_run: float
    scrapes: int


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The OTEL_* variables a server process starts with (spawned children copy os.environ)."""
    names = (*OTEL_VARIABLES, *SERVER_ENVIRONMENT)
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def scrape_every(url: str, interval: float, counter: list[int]) -> None:
    """GET `url` every `interval` seconds, as Prometheus would (the body is read and dropped)."""

    def get() -> None:
        with urllib.request.urlopen(url, timeout=10) as answer:
            answer.read()

    while True:
        await asyncio.to_thread(get)
        counter[0] += 1
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def server_bench(
    args: argparse.Namespace,
    postgres: EmbeddedPostgres,
    server_dsn: str,
    provider_url: str,
    name: str,
    home: Path,
    *,
    traces: bool,
    metrics: bool,
    receiver: OtlpReceiver,
) -> AsyncIterator[object]:
    dsn = await create_database(server_dsn, name)
    variables = (
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "agentflow-bench",
        }
        if traces
        else {}
    )
    with environment({**SERVER_ENVIRONMENT, **variables}):
        server = base.ServerProcess(dsn, args.pool, home / f"{name}.log", metrics=metrics)
    try:
        metadata = (("x-api-key", server.key),)
        async with grpc.aio.insecure_channel(server.address) as channel:
            await source_pb2_grpc.SourceServiceStub(channel).CreateSource(
                source_pb2.CreateSourceRequest(
                    source=source_pb2.Source(
                        display_name="openai-main",
                        type="openai",
                        config=base.struct(
                            {"base_url": f"{provider_url}/v1", "model": "fake-model"}
                        ),
                        secrets={"api_key": "sk-bench"},
                    )
                ),
                metadata=metadata,
                timeout=30,
            )
            workflow = await workflow_pb2_grpc.WorkflowServiceStub(channel).CreateWorkflow(
                workflow_pb2.CreateWorkflowRequest(
                    workflow=workflow_pb2.Workflow(spec=base.struct(base.SPEC))
                ),
                metadata=metadata,
                timeout=30,
            )
            meter = base.Meter(server, postgres.data_directory)
            yield base.Bench(channel, metadata, workflow.name, server, meter)
    finally:
        server.stop()


async def one_round(
    args: argparse.Namespace,
    postgres: EmbeddedPostgres,
    server_dsn: str,
    provider_url: str,
    home: Path,
    number: int,
    mode: str,
    receiver: OtlpReceiver,
) -> Round:
    traces, metrics = MODES[mode]
    received_before = len(receiver.spans())
    async with server_bench(
        args,
        postgres,
        server_dsn,
        provider_url,
        f"bench_{mode}_{number}",
        home,
        traces=traces,
        metrics=metrics,
        receiver=receiver,
    ) as bench:
        scrapes = [0]
        scraper = None
        if metrics:
            assert bench.server.metrics_url is not None
            scraper = asyncio.create_task(
                scrape_every(bench.server.metrics_url, args.scrape, scrapes)
            )
        try:
            await base.execute_level(bench, args.concurrency, args.warmup)
            await bench.meter.start()
            wall, _ = await base.execute_level(bench, args.concurrency, args.runs)
            cpu = await bench.meter.per(args.runs)
        finally:
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper
    # The server flushed its span processor on the way out: every span of the round is here.
    received = receiver.spans()[received_before:]
    executions = sum(span.name.startswith("execution ") for span in received)
    spans = len(received) / executions if executions else 0.0
    if traces and not spans:
        raise RuntimeError("traces were on, and no span of the round was received")
    return Round(mode, cpu.server * 1000, args.runs / wall, spans, scrapes[0])


async def main_async(args: argparse.Namespace) -> list[Round]:
    configure_logging("WARNING")
    rounds: list[Round] = []
    with (
        tempfile.TemporaryDirectory(prefix="agentflow-bench-") as home,
        OtlpReceiver() as receiver,
    ):
        postgres = EmbeddedPostgres(Path(home), delete=True)
        with postgres as server_dsn, FakeProviderServer(latency=args.latency) as provider:
            print(await base.server_settings(await create_database(server_dsn, "settings")))
            print(
                f"provider {provider.url}: {args.latency * 1000:g} ms per request; "
                f"{args.runs} runs per round at concurrency {args.concurrency}; OTLP receiver "
                f"{receiver.http_endpoint}; metrics scraped every {args.scrape:g} s when on"
            )
            print(f"\n  {'round':>5}  {'mode':<4}{'server CPU/run':>16}{'runs/s':>9}"
                  f"{'spans/run':>11}{'scrapes':>9}")  # fmt: skip
            for number in range(1, args.rounds + 1):
                for mode in args.modes:
                    result = await one_round(
                        args, postgres, server_dsn, provider.url, Path(home), number, mode,
                        receiver,
                    )  # fmt: skip
                    rounds.append(result)
                    print(
                        f"  {number:>5}  {mode:<4}{result.cpu_ms:>13.2f} ms"
                        f"{result.runs_per_second:>9.1f}{result.spans_per_run:>11.1f}"
                        f"{result.scrapes:>9}"
                    )
    return rounds


def paired_growths(rounds: list[Round], mode: str) -> list[float]:
    """Per round, how much more CPU per run `mode` took than that round's `off`, in %."""
    offs = [r.cpu_ms for r in rounds if r.mode == "off"]
    mine = [r.cpu_ms for r in rounds if r.mode == mode]
    return [(m / o - 1) * 100 for m, o in zip(mine, offs, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="measured executions per round")
    parser.add_argument("--concurrency", type=int, default=10, help="concurrent callers")
    parser.add_argument(
        "--warmup",
        type=int,
        default=100,
        help="executions a fresh server runs before it is measured (its caches filled)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every mode")
    parser.add_argument("--latency", type=float, default=0.05, help="provider latency, seconds")
    parser.add_argument("--scrape", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--pool", type=int, default=20, help="the server's database pool size")
    parser.add_argument(
        "--modes",
        type=lambda text: text.split(","),
        default=list(MODES),
        help="which of off, traces, metrics, on to measure (each round, in this order)",
    )
    args = parser.parse_args()
    if not {"off", "on"} <= set(args.modes) <= set(MODES):
        parser.error(f"--modes: off and on, and any of {', '.join(MODES)}")
    started = time.perf_counter()
    rounds = asyncio.run(main_async(args))
    medians = {
        mode: statistics.median(r.cpu_ms for r in rounds if r.mode == mode) for mode in args.modes
    }
    print(f"\nserver CPU per run, median of {args.rounds} rounds, and the growth over off")
    print("(median of the rounds' own growths: each round's modes ran back to back):")
    growths: dict[str, list[float]] = {}
    for mode, median in medians.items():
        growths[mode] = paired_growths(rounds, mode)
        spread = growths[mode]
        print(
            f"  {mode:<8}{median:>7.2f} ms   {statistics.median(spread):+5.1f} %"
            f"   (rounds {min(spread):+.1f} … {max(spread):+.1f} %)"
        )
    spans = statistics.median(r.spans_per_run for r in rounds if r.mode == "on")
    print(f"exported spans per run (on): {spans:.1f}")
    growth = statistics.median(growths["on"])
    verdict = "PASS" if growth <= AIM else "MISS"
    print(f"growth with export and metrics on: {growth:+.1f} %   aim <= {AIM:g} %   {verdict}")
    print(f"(benchmark took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
