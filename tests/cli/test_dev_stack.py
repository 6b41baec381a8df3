"""`agentflow dev` as a user runs it: a real process that starts embedded PostgreSQL and Valkey,
the gRPC server and Envoy, prints where they listen, and stops all of them on Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentflow_grpc.cli.dev import DEV_KEY_FILE, STACK_FILE
from agentflow_grpc.testing.replicas import environment_without_settings

AGENTFLOW = Path(sys.executable).parent / "agentflow"
READY_LINE = "Ctrl-C stops everything."
ECHO_SPEC = {
    "api_version": "agentflow/v1",
    "name": "kept",
    "inputs": {"q": {"type": "string"}},
    "outputs": {"r": {"from": "inputs.q"}},
    "nodes": [{"id": "start", "type": "input"}],
    "edges": [],
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@dataclass
class DevStack:
    process: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread | None = None

    def field(self, label: str) -> str:
        for line in self.lines:
            match = re.match(rf"\s+{label}\s+(\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"no {label!r} line in:\n" + "\n".join(self.lines))

    @property
    def rest(self) -> str:
        return self.field("REST API").removesuffix("/v1")

    @property
    def key(self) -> str:
        return self.field("API key")


def _environment(home: Path) -> dict[str, str]:
    environment = environment_without_settings()
    environment.update(
        AGENTFLOW_HOME=str(home),
        AGENTFLOW_GRPC_PORT="0",
        AGENTFLOW_REST_PORT="0",
        AGENTFLOW_LOG_FORMAT="json",
        AGENTFLOW_SHUTDOWN_GRACE="1",
        AGENTFLOW_PROCESSES="2",  # as on a 2-core machine, whatever this one has
    )
    return environment


def _start(home: Path) -> DevStack:
    process = subprocess.Popen(
        [str(AGENTFLOW), "dev"],
        env=_environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stack = DevStack(process, [])
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stack.lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                ready.set()
        ready.set()

    stack.reader = threading.Thread(target=read, daemon=True)
    stack.reader.start()
    if not ready.wait(120) or process.poll() is not None:
        process.kill()
        raise AssertionError("agentflow dev did not come up:\n" + "\n".join(stack.lines))
    return stack


def _pids(home: Path, dev: int) -> dict[str, int]:
    """The processes `dev` started: Envoy and the server processes (its children), PostgreSQL
    and Valkey (daemons)."""
    stack = json.loads((home / STACK_FILE).read_text())
    servers = [
        child.pid
        for child in psutil.Process(dev).children()
        if any(part.startswith("--supervisor=") for part in child.cmdline())
    ]
    assert len(servers) == 2, servers
    return {
        "envoy": int(stack["envoy_pid"]),
        "postgres": int((home / "postgres" / "postmaster.pid").read_text().split()[0]),
        "valkey": int((home / "valkey" / "valkey.pid").read_text().strip()),
        **{f"server {number}": pid for number, pid in enumerate(servers, start=1)},
    }


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _interrupt(stack: DevStack) -> int:
    stack.process.send_signal(signal.SIGINT)
    try:
        return stack.process.wait(60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
        raise
    finally:
        _close(stack)


def _close(stack: DevStack) -> None:
    stack.process.wait(10)
    if stack.reader is not None:
        stack.reader.join(10)  # it reads to the end of the output, which the exit closed
    if stack.process.stdout is not None:
        stack.process.stdout.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "agentflow-home"


def _assert_stopped(pids: dict[str, int]) -> None:
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {name: _alive(pid) for name, pid in pids.items()} == dict.fromkeys(pids, False)


def _grpc_health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status  # type: ignore[no-any-return]


def test_dev_starts_the_whole_stack_prints_it_and_ctrl_c_stops_every_process(home: Path) -> None:
    stack = _start(home)
    try:
        key = stack.key
        assert key.startswith("af_")
        assert (home / DEV_KEY_FILE).read_text().strip() == key
        assert (home / DEV_KEY_FILE).stat().st_mode & 0o077 == 0  # the owner's alone
        assert stack.field("Web page") == f"{stack.rest}/#api_key={key}"
        assert "new" in next(line for line in stack.lines if "API key" in line)

        # gRPC, straight to the server.
        assert _grpc_health(stack.field("gRPC API")) == health_pb2.HealthCheckResponse.SERVING

        # Two server processes share the gRPC port; each has its Prometheus metrics, where the
        # banner and the stack file say.
        assert "(2 server processes)" in next(line for line in stack.lines if "gRPC API" in line)
        metrics_line = next(line for line in stack.lines if "Metrics" in line)
        metrics_urls = metrics_line.split()[1:]
        written = json.loads((home / STACK_FILE).read_text())
        assert written["metrics_all"] == metrics_urls
        assert written["metrics"] == metrics_urls[0] == stack.field("Metrics")
        assert len(set(metrics_urls)) == 2
        for metrics_url in metrics_urls:
            scraped = httpx.get(metrics_url, timeout=30)
            assert scraped.status_code == 200
            assert 'agentflow_db_pool_connections{state="idle"}' in scraped.text

        with httpx.Client(base_url=stack.rest, timeout=30) as http:
            health = http.get("/v1/health").json()
            assert health["status"] == "SERVING"
            assert {d["name"]: d["status"] for d in health["dependencies"]} == {
                "database": "SERVING",
                "redis": "SERVING",
            }
            page = http.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")

            created = http.post(
                "/v1/workflows",
                headers={"x-api-key": key},
                json={"spec": ECHO_SPEC},
            )
            assert created.status_code == 200, created.text
            assert http.get("/v1/workflows").status_code == 401  # no key, no list

        pids = _pids(home, stack.process.pid)
        assert all(_alive(pid) for pid in pids.values()), pids
    except BaseException:
        stack.process.kill()
        _close(stack)
        raise

    assert _interrupt(stack) == 0
    _assert_stopped(pids)
    assert not (home / STACK_FILE).exists()

    # A second start reuses the data: the same key, the workflow made before.
    again = _start(home)
    try:
        assert again.key == key
        assert "kept from an earlier start" in next(
            line for line in again.lines if "API key" in line
        )
        with httpx.Client(base_url=again.rest, timeout=30) as http:
            listed = http.get("/v1/workflows", headers={"x-api-key": key}).json()
        assert [w["spec_name"] for w in listed["workflows"]] == ["kept"]
    finally:
        assert _interrupt(again) == 0


def test_after_dev_is_killed_the_next_start_stops_its_leftovers_and_keeps_the_data(
    home: Path,
) -> None:
    first = _start(home)
    key = first.key
    with httpx.Client(base_url=first.rest, timeout=30) as http:
        created = http.post("/v1/workflows", headers={"x-api-key": key}, json={"spec": ECHO_SPEC})
        assert created.status_code == 200, created.text
    left = _pids(home, first.process.pid)
    first.process.kill()  # SIGKILL: no exit handler runs
    _close(first)
    # What it started outlives it: Envoy, PostgreSQL and Valkey are daemons or orphans now;
    # its server processes notice they lost their supervisor and stop by themselves.
    servers = {name: pid for name, pid in left.items() if name.startswith("server")}
    daemons = {name: pid for name, pid in left.items() if name not in servers}
    assert all(_alive(pid) for pid in daemons.values()), daemons
    _assert_stopped(servers)

    second = _start(home)
    try:
        # Envoy and Valkey of the dead run are stopped (one per directory); PostgreSQL is
        # joined and, as this run's own now, stopped when it stops.
        assert not _alive(left["envoy"])
        assert not _alive(left["valkey"])
        assert second.key == key
        with httpx.Client(base_url=second.rest, timeout=30) as http:
            listed = http.get("/v1/workflows", headers={"x-api-key": key}).json()
            assert [w["spec_name"] for w in listed["workflows"]] == ["kept"]
            assert http.get("/v1/health").json()["status"] == "SERVING"
        now = _pids(home, second.process.pid)

        # One stack per AGENTFLOW_HOME: a second `dev` on it refuses, and says why.
        refused = subprocess.run(
            [str(AGENTFLOW), "dev"],
            env=_environment(home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0
        assert "another `agentflow dev` is running" in refused.stderr
    except BaseException:
        second.process.kill()
        _close(second)
        raise
    assert _interrupt(second) == 0
    _assert_stopped({**now, "postgres (left)": left["postgres"]})
