"""`agentflow serve --processes N` as a user runs it: one supervisor, N server processes on one
port (SO_REUSEPORT), the embedded servers started once; a busy port refused, a killed process
replaced, SIGTERM stopping everything. And `--processes 1`, serving in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.storage import create_database

from agentflow_grpc.cli.supervisor import (
    RestartPolicy,
    ServerProcesses,
    SupervisorError,
    exit_reason,
    reserve_port,
)
from agentflow_grpc.config import Settings, default_processes
from agentflow_grpc.testing.replicas import (
    AGENTFLOW,
    environment_without_settings,
    replica_environment,
)

HEALTH_CHECKS = re.compile(
    r'^agentflow_rpc_requests_total\{code="OK",method="/grpc.health.v1.Health/Check"\} (\S+)$',
    re.MULTILINE,
)


# --- the parts, in this process ---


def test_the_default_is_one_process_per_usable_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTFLOW_PROCESSES", raising=False)
    assert Settings().processes == default_processes() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("AGENTFLOW_PROCESSES", "3")
    assert Settings().processes == 3


def test_a_reserved_port_is_refused_to_another_reservation_and_to_a_plain_server() -> None:
    with reserve_port("127.0.0.1", 0) as reserved:
        assert reserved.port > 0
        taken = f"cannot listen on 127.0.0.1:{reserved.port}: "
        with pytest.raises(OSError, match=taken), reserve_port("127.0.0.1", reserved.port):
            pass
        with socket.socket() as plain, pytest.raises(OSError, match="in use"):
            plain.bind(("127.0.0.1", reserved.port))
        # The server processes bind it with SO_REUSEPORT, as gRPC does with so_reuseport=1.
        with socket.socket() as process:
            process.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            process.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            process.bind(("127.0.0.1", reserved.port))
            process.listen()
            reserved.release()
            # Still taken: by the process.
            with pytest.raises(OSError, match=taken), reserve_port("127.0.0.1", reserved.port):
                pass


def test_restarts_back_off_and_give_up_after_quick_exits_in_a_row() -> None:
    policy = RestartPolicy(min_uptime=10, max_quick_exits=3)
    assert policy.after_exit(60.0) == 0.5  # it served a while: at once, nearly
    assert policy.after_exit(None) == 1.0  # it never served
    assert policy.after_exit(1.0) == 2.0  # it served, but not long
    assert policy.after_exit(60.0) == 0.5  # a long run again: the count starts over
    assert [policy.after_exit(None), policy.after_exit(None)] == [1.0, 2.0]
    assert policy.after_exit(None) is None  # the third quick exit in a row: give up
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(2) == "exit code 2"


def test_fixed_metrics_ports_must_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_METRICS_PORT", "65535")
    with (
        reserve_port("127.0.0.1", 0) as reserved,
        pytest.raises(SupervisorError, match="leaves no room for 2 processes"),
    ):
        ServerProcesses(Settings(), reserved, count=2, environment={})


# --- real processes ---


@dataclass
class Served:
    """An `agentflow serve` process: what it printed on stdout, its stderr in `log`."""

    process: subprocess.Popen[str]
    log: Path
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def wait_lines(self, count: int, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            if self.process.poll() is not None and not self._reader_alive():
                break
            time.sleep(0.05)
        assert len(self.lines) >= count, (self.lines, self.log.read_text()[-3000:])
        return self.lines[:count]

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def children(self) -> list[psutil.Process]:
        """Its server processes (the embedded servers are daemons, not its children)."""
        return [
            child
            for child in psutil.Process(self.process.pid).children()
            if any(part.startswith("--supervisor=") for part in _cmdline(child))
        ]

    def events(self, name: str) -> list[dict[str, object]]:
        """Its (and its processes') JSON log events called `name`."""
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then its exit code (SIGKILL if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        if self._reader is not None:
            self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _assert_gone(pids: dict[str, int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {name: _alive(pid) for name, pid in pids.items()} == dict.fromkeys(pids, False)


def _launch(arguments: list[str], environment: dict[str, str], log: Path) -> Served:
    with log.open("w") as stderr:  # a file, not a pipe nobody reads
        process = subprocess.Popen(
            [str(AGENTFLOW), "serve", *arguments],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    served = Served(process, log)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            served.lines.append(line.rstrip("\n"))

    served._reader = threading.Thread(target=read, daemon=True)
    served._reader.start()
    return served


@contextlib.contextmanager
def serving(arguments: list[str], environment: dict[str, str], log: Path) -> Iterator[Served]:
    """`agentflow serve ARGUMENTS`, killed on the way out if the test has not stopped it."""
    served = _launch(arguments, environment, log)
    try:
        yield served
    finally:
        served.close()


def _embedded_environment(home: Path) -> dict[str, str]:
    """No DATABASE_URL, no REDIS_URL: the embedded servers, in `home`."""
    environment = environment_without_settings()
    environment.update(
        AGENTFLOW_HOME=str(home),
        AGENTFLOW_GRPC_PORT="0",
        AGENTFLOW_LOG_FORMAT="json",
        AGENTFLOW_SHUTDOWN_GRACE="1",
    )
    return environment


@pytest.fixture
def given_environment(postgres_dsn: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """A fresh database (`serve` migrates it) on the session's PostgreSQL, the session's Valkey
    under a prefix of this test's, shared secret keys."""
    dsn = asyncio.run(create_database(postgres_dsn))
    return replica_environment(
        dsn,
        redis_url,
        home=tmp_path / "home",
        redis_prefix=f"procs-{tmp_path.name[-20:]}",
        shutdown_grace=1,
        workers=2,
    )


def _health(address: str) -> int:
    """A Health check on a connection of its own (the kernel picks a process per connection)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(address, options=options) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        return int(response.status)


def _health_checks(metrics_url: str) -> float:
    """The Health checks that process answered, by its own /metrics."""
    found = HEALTH_CHECKS.search(httpx.get(metrics_url, timeout=10).text)
    return 0.0 if found is None else float(found.group(1))


def _port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_share_one_port_both_answer_and_sigterm_stops_everything(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    environment = _embedded_environment(home)
    with serving(["--processes", "2"], environment, tmp_path / "serve.log") as served:
        listening, *metrics = served.wait_lines(3)
        assert listening.startswith("grpc://127.0.0.1:"), served.lines
        address = listening.removeprefix("grpc://")
        assert len(set(metrics)) == 2
        assert all(url.endswith("/metrics") for url in metrics)
        children = served.children()
        assert len(children) == 2
        for child in children:  # each on the port, sharing it, on the supervisor's servers
            assert f"--port={_port_of(address)}" in _cmdline(child)
            child_environment = child.environ()
            assert child_environment["DATABASE_URL"] != ""
            assert child_environment["REDIS_URL"].startswith("redis://127.0.0.1:")
            assert child_environment["AGENTFLOW_SECRET_KEYS"] == (
                (home / "secret-keys").read_text().strip()  # the embedded database's dev keys
            )
        # Started once: one PostgreSQL and one Valkey, in `home`, not children of anyone's.
        pids = {
            "supervisor": served.process.pid,
            "postgres": int((home / "postgres" / "postmaster.pid").read_text().split()[0]),
            "valkey": int((home / "valkey" / "valkey.pid").read_text().strip()),
        }
        pids.update({f"server {child.pid}": child.pid for child in children})

        # Each new connection goes to one process: over enough of them, both answer.
        for _ in range(10):
            for _ in range(8):
                assert _health(address) == health_pb2.HealthCheckResponse.SERVING
            answered = [_health_checks(url) for url in metrics]
            if all(count > 0 for count in answered):
                break
        assert all(count > 0 for count in answered), answered

        # The port is theirs: another server on it fails, with several processes or one.
        for processes in ("2", "1"):
            refused = subprocess.run(
                [
                    str(AGENTFLOW),
                    "serve",
                    "--processes",
                    processes,
                    "--port",
                    str(_port_of(address)),
                ],
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert refused.returncode == 2, refused.stderr
            assert f"cannot listen on {address}" in refused.stderr
            assert not refused.stdout
        assert len(served.children()) == 2

        assert served.stop() == 0
    _assert_gone(pids)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_process_is_replaced(given_environment: dict[str, str], tmp_path: Path) -> None:
    with serving(["--processes", "2"], given_environment, tmp_path / "serve.log") as served:
        listening, *_ = served.wait_lines(3)
        address = listening.removeprefix("grpc://")
        first, second = served.children()
        first.send_signal(signal.SIGKILL)

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            restarted = served.events("server.process_restarted")
            if restarted:
                break
            time.sleep(0.2)
        assert restarted, served.log.read_text()[-3000:]
        exited = served.events("server.process_exited")
        assert [(e["pid"], e["reason"]) for e in exited] == [(first.pid, "killed by SIGKILL")]
        now = served.children()
        assert len(now) == 2
        assert second in now
        assert first.pid not in {child.pid for child in now}
        replacement = next(child for child in now if child != second)
        assert restarted[0]["pid"] == replacement.pid
        assert served.process.poll() is None
        for _ in range(6):
            assert _health(address) == health_pb2.HealthCheckResponse.SERVING

        assert served.stop() == 0
    _assert_gone({"second": second.pid, "replacement": replacement.pid})


def test_a_busy_port_fails_clearly_before_anything_starts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(AGENTFLOW), "serve", "--processes", "2", "--port", str(port)],
            env=_embedded_environment(home),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: the address is in use or not local"
    )
    assert not result.stdout
    assert not (home / "postgres").exists()  # no embedded server was started for nothing


def _ports_with_the_next_busy() -> tuple[int, socket.socket]:
    """A free port P and a listening socket on P+1."""
    for _ in range(100):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1] - 1
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))
        except OSError:
            busy.close()
            continue
        busy.listen()
        return port, busy
    raise AssertionError("no free port below a free one")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_process_that_cannot_start_ends_the_start_with_its_error(
    given_environment: dict[str, str], tmp_path: Path
) -> None:
    port, busy = _ports_with_the_next_busy()  # process 1 gets metrics port P, process 2 P+1
    with busy:
        environment = {**given_environment, "AGENTFLOW_METRICS_PORT": str(port)}
        with serving(["--processes", "2"], environment, tmp_path / "serve.log") as served:
            assert served.process.wait(120) == 2
            served.close()
    log = served.log.read_text()
    assert f"error: cannot serve metrics on 127.0.0.1:{port + 1}" in log  # the process's own
    assert "error: server process 2 of 2 did not start (exit code 2; its error is above)" in log
    assert served.lines == []
    leftovers = [
        process.pid
        for process in psutil.process_iter()
        if f"--supervisor={served.process.pid}" in _cmdline(process)
    ]
    assert leftovers == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_process_that_keeps_failing_to_start_again_makes_the_supervisor_give_up(
    given_environment: dict[str, str], tmp_path: Path
) -> None:
    port, busy = _ports_with_the_next_busy()
    busy.close()  # free for now: both processes start
    environment = {**given_environment, "AGENTFLOW_METRICS_PORT": str(port)}
    with serving(["--processes", "2"], environment, tmp_path / "serve.log") as served:
        served.wait_lines(3)
        victim = next(c for c in served.children() if _metrics_port(c) == port + 1)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        with socket.socket() as taken:  # its metrics port, now someone else's: it cannot start
            taken.bind(("127.0.0.1", port + 1))
            taken.listen()
            assert served.process.wait(120) == 2
    log = served.log.read_text()
    assert "error: server process 2 exited 5 times in a row, each within 10 s of its start" in log
    assert [e["reason"] for e in served.events("server.process_exited")] == [
        "killed by SIGKILL",
        *["exit code 2"] * 4,
    ]
    leftovers = [
        process.pid
        for process in psutil.process_iter()
        if f"--supervisor={served.process.pid}" in _cmdline(process)
    ]
    assert leftovers == []


def _metrics_port(process: psutil.Process) -> int:
    return int(process.environ()["AGENTFLOW_METRICS_PORT"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_one_process_serves_in_its_own_process_as_before(
    given_environment: dict[str, str], tmp_path: Path
) -> None:
    environment = {**given_environment, "AGENTFLOW_PROCESSES": "3"}  # the option wins
    with serving(["--processes", "1"], environment, tmp_path / "serve.log") as served:
        listening, metrics = served.wait_lines(2)
        assert listening.startswith("grpc://")
        assert metrics.endswith("/metrics")
        assert psutil.Process(served.process.pid).children() == []
        assert _health(listening.removeprefix("grpc://")) == health_pb2.HealthCheckResponse.SERVING
        assert _health_checks(metrics) == 1.0
        assert served.stop() == 0
    log = served.log.read_text()
    assert f"AgentFlow gRPC API listening on {listening.removeprefix('grpc://')}" in log
    assert "server.process_serving" not in log
