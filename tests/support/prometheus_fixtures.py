"""Fixtures for the metrics test: a real Prometheus (Debian's `prometheus`, which `make test`
installs) scraping a running server's `/metrics`.

A pytest plugin, loaded by tests/conftest.py. `metrics_server` serves the `api` fixture's app's
metrics on a free port (as `agentflow serve` does); `prometheus` is a Prometheus on another free
port, storing in a temporary directory, with a generated config that scrapes that endpoint every
second (job `agentflow`). `Prometheus.query` asks its HTTP API a PromQL query; `wait_for` polls
one until a scrape has brought the value a test expects.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow_grpc.observability.exposition import MetricsServer
from support.api_fixtures import RunningApi
from support.network import closed_port

PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_INTERVAL = "1s"
START_TIMEOUT = 30.0


@dataclass
class Sample:
    labels: dict[str, str]
    value: float


@dataclass
class Prometheus:
    url: str  # the HTTP API's base, http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path
    http: httpx.AsyncClient

    async def query(self, promql: str) -> list[Sample]:
        """An instant query's vector (or a scalar, as one sample without labels)."""
        reply = await self.http.get(f"{self.url}/api/v1/query", params={"query": promql})
        body = reply.json()
        assert body["status"] == "success", body
        data = body["data"]
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]

    async def value(self, promql: str) -> float | None:
        """The one value a query gives, or None when it gives none."""
        samples = await self.query(promql)
        assert len(samples) <= 1, samples
        return samples[0].value if samples else None

    async def wait_for(
        self,
        promql: str,
        expected: float | Callable[[float], bool],
        *,
        timeout: float = 30.0,
    ) -> float:
        """The query's value once it is `expected` (or `expected(value)` holds), polled while
        Prometheus scrapes."""
        holds = expected if callable(expected) else (lambda value: math.isclose(value, expected))
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            last = await self.value(promql)
            if last is not None and holds(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{promql} is {last}, not as expected within {timeout} s; "
                    f"Prometheus log:\n{self.log.read_text()[-2000:]}"
                )
            await asyncio.sleep(0.25)


def scrape_config(targets: Sequence[str]) -> str:
    """A prometheus.yml scraping `targets` (host:port) at /metrics every second."""
    listed = ", ".join(f'"{target}"' for target in targets)
    return (
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        "  - job_name: agentflow\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: [{listed}]\n"
    )


@asynccontextmanager
async def running_prometheus(targets: Sequence[str], directory: Path) -> AsyncIterator[Prometheus]:
    """Prometheus scraping `targets`, its config, data and log in `directory`; stopped (and
    waited for) on exit."""
    if shutil.which(PROMETHEUS) is None:
        pytest.fail(f"{PROMETHEUS} is missing: `make prometheus` installs Debian's package")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(scrape_config(targets))
    port = closed_port()
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            await _ready(url, http, process, log)
            yield Prometheus(url, process, log, http)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def _ready(
    url: str, http: httpx.AsyncClient, process: subprocess.Popen[Any], log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if (await http.get(f"{url}/-/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"Prometheus did not start:\n{log.read_text()[-2000:]}")


@pytest.fixture
async def metrics_server(api: RunningApi) -> AsyncIterator[MetricsServer]:
    """The `api` server's metrics on a free port, as `agentflow serve` serves them."""
    server = await MetricsServer.start(api.server.app.metrics, host="127.0.0.1", port=0)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def prometheus(metrics_server: MetricsServer, tmp_path: Path) -> AsyncIterator[Prometheus]:
    """A Prometheus scraping `metrics_server` every second."""
    async with running_prometheus([metrics_server.address], tmp_path / "prometheus") as found:
        yield found
