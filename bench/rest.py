"""Benchmark: what the REST/SSE gateway (Envoy) adds over calling the gRPC API directly.

    python bench/rest.py [--gets 1000] [--concurrency 10] [--executions 40] [--latency 0.05]

It runs the stack as a user does — `agentflow dev` in a child process, in a temporary
AGENTFLOW_HOME (embedded PostgreSQL and Valkey, the gRPC server, Envoy; free ports) — and the
fake OpenAI-compatible provider here (every request answered after `--latency` s, 50 ms). Through
REST it creates an `openai` source on the provider and a workflow (an input node, then one
streaming llm node). Then, each side after a warm-up:

(a) GetWorkflow: `--gets` calls one after another over gRPC (one grpc.aio channel to the
    server), over gRPC through Envoy (its port passes native gRPC: the proxy hop alone) and over
    REST (one HTTP/1.1 keep-alive connection to Envoy: the hop plus JSON transcoding, and httpx
    in place of grpc's C client): p50, p99; then the same number from `--concurrency` tasks at
    once: requests/s (REST: one connection per task).
(b) Streamed executions of the stored workflow, every event read up to the terminal one:
    ExecuteWorkflow over gRPC and `POST /v1/executions:execute` as SSE, at concurrency 1 and
    `--concurrency`: executions/s, p50 and p99 wall time per run, p50 time to the first event.

Client, provider, server, Envoy and PostgreSQL share this machine (2 cores here): the figures are
for comparing the two paths, on a quiet machine. No aim is set; the gateway should add about a
millisecond per call.
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
import json
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx

from agentflow_grpc._gen.agentflow.v1 import (
    execution_pb2,
    execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from agentflow_grpc.testing import FakeProviderServer
from agentflow_grpc.testing.replicas import environment_without_settings

AGENTFLOW = Path(sys.executable).parent / "agentflow"
SPEC = {
    "api_version": "agentflow/v1",
    "name": "bench-answer",
    "inputs": {"question": {"type": "string"}},
    "outputs": {"answer": {"from": "nodes.reply.output.text"}},
    "nodes": [
        {"id": "start", "type": "input"},
        {
            "id": "reply",
            "type": "llm",
            "source": "openai-main",
            "config": {"prompt": "Answer: {{ inputs.question }}"},
        },
    ],
    "edges": [{"from": "start", "to": "reply"}],
}
TERMINAL = ("execution_completed", "execution_failed", "execution_cancelled")
WARMUP = 100


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


class DevStack:
    """`agentflow dev` in a child process; its printed addresses and key."""

    def __init__(self, home: Path) -> None:
        environment = environment_without_settings()
        environment.update(
            AGENTFLOW_HOME=str(home),
            AGENTFLOW_GRPC_PORT="0",
            AGENTFLOW_REST_PORT="0",
            AGENTFLOW_LOG_FORMAT="json",
            AGENTFLOW_LOG_LEVEL="WARNING",  # no access log lines on the measured path
            AGENTFLOW_PROCESSES="1",  # the gateway's cost over one server, whatever the cores
            # The server is measured, not its limits: one tenant's calls, unthrottled.
            AGENTFLOW_TENANT_REQUESTS_PER_SECOND="0",
            AGENTFLOW_KEY_REQUESTS_PER_SECOND="0",
            AGENTFLOW_TENANT_MAX_CONCURRENT_EXECUTIONS="0",
        )
        self.process = subprocess.Popen(
            [str(AGENTFLOW), "dev"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=(home / "dev.log").open("w"),
            text=True,
        )
        lines: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            lines.append(line)
            if line.strip() == "Ctrl-C stops everything.":
                break
        text = "".join(lines)
        found = {
            label: re.search(rf"^\s+{label}\s+(\S+)", text, re.MULTILINE)
            for label in ("gRPC API", "REST API", "API key")
        }
        if not all(found.values()):
            self.process.kill()
            raise SystemExit(f"agentflow dev did not start:\n{text}")
        self.grpc = found["gRPC API"].group(1)  # type: ignore[union-attr]
        self.rest = found["REST API"].group(1).removesuffix("/v1")  # type: ignore[union-attr]
        self.key = found["API key"].group(1)  # type: ignore[union-attr]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def concurrent_rate(
    make_call: Callable[[], Callable[[], Awaitable[Any]]], total: int, tasks: int
) -> float:
    """Calls per second with `tasks` callers making `total` calls between them."""
    calls = [make_call() for _ in range(tasks)]
    started = time.perf_counter()
    await asyncio.gather(*(timed(call, total // tasks) for call in calls))
    return (total // tasks * tasks) / (time.perf_counter() - started)


def row(name: str, times: list[float], rate: float | None = None) -> str:
    text = (
        f"  {name:<34} p50 {percentile(times, 0.5):7.2f} ms   p99 {percentile(times, 0.99):7.2f} ms"
    )
    return text + (f"   {rate:8.1f} /s" if rate is not None else "")


async def gets(args: argparse.Namespace, stack: DevStack, workflow: str) -> None:
    metadata = (("x-api-key", stack.key),)
    request = workflow_pb2.GetWorkflowRequest(name=workflow)
    headers = {"x-api-key": stack.key}
    channel = grpc.aio.insecure_channel(stack.grpc)
    stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
    # Envoy passes native gRPC through: the same call, one proxy hop, no transcoding.
    proxied_channel = grpc.aio.insecure_channel(stack.rest.removeprefix("http://"))
    proxied = workflow_pb2_grpc.WorkflowServiceStub(proxied_channel)
    http = httpx.AsyncClient(base_url=stack.rest, headers=headers, timeout=30)

    async def grpc_get() -> None:
        await stub.GetWorkflow(request, metadata=metadata, timeout=10)

    async def proxied_get() -> None:
        await proxied.GetWorkflow(request, metadata=metadata, timeout=10)

    async def rest_get() -> None:
        response = await http.get(f"/v1/{workflow}")
        response.raise_for_status()

    clients: list[httpx.AsyncClient] = []

    def rest_caller() -> Callable[[], Awaitable[None]]:
        client = httpx.AsyncClient(base_url=stack.rest, headers=headers, timeout=30)
        clients.append(client)

        async def call() -> None:
            (await client.get(f"/v1/{workflow}")).raise_for_status()

        return call

    try:
        print(
            f"\n(a) GetWorkflow, {args.gets} calls one after another, "
            f"then {args.concurrency} callers at once"
        )
        for name, call, caller in (
            ("gRPC, direct", grpc_get, lambda: grpc_get),
            ("gRPC through Envoy", proxied_get, lambda: proxied_get),
            ("REST through Envoy", rest_get, rest_caller),
        ):
            await timed(call, WARMUP)
            times = await timed(call, args.gets)
            rate = await concurrent_rate(caller, args.gets, args.concurrency)
            print(row(name, times, rate))
    finally:
        await http.aclose()
        for client in clients:
            await client.aclose()
        await channel.close()
        await proxied_channel.close()


async def run_level(
    run: Callable[[], Awaitable[tuple[float, float]]], level: int, total: int
) -> tuple[float, list[tuple[float, float]]]:
    """`total` runs by `level` callers: runs per second, and each run's (wall, first event)."""
    results: list[tuple[float, float]] = []

    async def caller() -> None:
        for _ in range(total // level):
            results.append(await run())

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(level)))
    return len(results) / (time.perf_counter() - started), results


async def executions(args: argparse.Namespace, stack: DevStack, workflow: str) -> None:
    metadata = (("x-api-key", stack.key),)
    channel = grpc.aio.insecure_channel(stack.grpc)
    stub = execution_pb2_grpc.ExecutionServiceStub(channel)
    http = httpx.AsyncClient(
        base_url=stack.rest,
        headers={"x-api-key": stack.key},
        timeout=httpx.Timeout(30, read=60),
        limits=httpx.Limits(max_connections=200),
    )
    body = {"workflow": workflow, "inputs": {"question": "How fast?"}}

    async def grpc_run() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        request = execution_pb2.ExecuteWorkflowRequest(workflow=workflow)
        request.inputs.update(body["inputs"])
        async for event in stub.ExecuteWorkflow(request, metadata=metadata, timeout=60):
            first = first or time.perf_counter() - started
            if event.type in TERMINAL and event.type != "execution_completed":
                raise RuntimeError(f"a run ended {event.type}")
        return (time.perf_counter() - started) * 1000, first * 1000

    async def rest_run() -> tuple[float, float]:
        started = time.perf_counter()
        first = 0.0
        async with http.stream("POST", "/v1/executions:execute", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                first = first or time.perf_counter() - started
                event = json.loads(line.removeprefix("data:"))
                if event["type"] in TERMINAL and event["type"] != "execution_completed":
                    raise RuntimeError(f"a run ended {event['type']}: {event['data']}")
        return (time.perf_counter() - started) * 1000, first * 1000

    try:
        print(
            f"\n(b) Streamed executions (one llm node, provider {args.latency * 1000:g} ms), "
            f"{args.executions} per level"
        )
        for level in (1, args.concurrency):
            for name, run in (("gRPC ExecuteWorkflow", grpc_run), ("REST SSE :execute", rest_run)):
                await asyncio.gather(*(run() for _ in range(level)))  # warm-up
                rate, results = await run_level(run, level, args.executions)
                totals = [total for total, _ in results]
                firsts = [first for _, first in results]
                print(
                    row(f"{name}, concurrency {level}", totals, rate)
                    + f"   first event p50 {percentile(firsts, 0.5):6.2f} ms"
                )
    finally:
        await http.aclose()
        await channel.close()


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="agentflow-bench-rest-") as folder:
        home = Path(folder)
        with FakeProviderServer(latency=args.latency) as provider:
            started = time.perf_counter()
            stack = DevStack(home)
            try:
                up = time.perf_counter() - started
                print(
                    f"agentflow dev up in {up:.1f} s: gRPC {stack.grpc}, REST {stack.rest}; "
                    f"provider {provider.url}"
                )
                async with httpx.AsyncClient(
                    base_url=stack.rest, headers={"x-api-key": stack.key}, timeout=30
                ) as http:
                    source = {
                        "display_name": "openai-main",
                        "type": "openai",
                        "config": {"base_url": f"{provider.url}/v1", "model": "fake-model"},
                        "secrets": {"api_key": "sk-bench"},
                    }
                    (await http.post("/v1/sources", json=source)).raise_for_status()
                    created = await http.post("/v1/workflows", json={"spec": SPEC})
                    created.raise_for_status()
                    workflow = created.json()["name"]
                await gets(args, stack, workflow)
                await executions(args, stack, workflow)
            finally:
                stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--executions", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.05)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
