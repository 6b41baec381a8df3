"""`agentflow dev --mysql`: the stack plus a MariaDB for `mysql` sources, printed in the banner,
kept in AGENTFLOW_HOME/mariadb and stopped with the rest on Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.mysql import MySQLAdapter
from agentflow_grpc.testing.replicas import environment_without_settings

AGENTFLOW = Path(sys.executable).parent / "agentflow"
READY_LINE = "Ctrl-C stops everything."

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _start(home: Path) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    environment = environment_without_settings()
    environment.update(
        AGENTFLOW_HOME=str(home),
        AGENTFLOW_GRPC_PORT="0",
        AGENTFLOW_REST_PORT="0",
        AGENTFLOW_METRICS_PORT="-1",
        AGENTFLOW_SHUTDOWN_GRACE="1",
        AGENTFLOW_PROCESSES="1",
    )
    process = subprocess.Popen(
        [str(AGENTFLOW), "dev", "--mysql"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip() == READY_LINE:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(120) or process.poll() is not None:
        process.kill()
        raise AssertionError("agentflow dev --mysql did not come up:\n" + "\n".join(lines))
    return process, lines, reader


def _stop(process: subprocess.Popen[str], reader: threading.Thread) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    finally:
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()


async def _check(dsn: str, password: str) -> str:
    source = MySQLAdapter().open(
        SourceDefinition(
            name="dev", type="mysql", config={"dsn": dsn}, secrets={"password": password}
        )
    )
    try:
        return await source.check()
    finally:
        await source.aclose()


def test_dev_mysql_runs_a_mariadb_prints_its_dsn_and_stops_it(tmp_path: Path) -> None:
    home = tmp_path / "agentflow-home"
    process, lines, reader = _start(home)
    try:
        line = next((line for line in lines if line.strip().startswith("MySQL")), None)
        assert line is not None, "\n".join(lines)
        found = re.search(r"(mysql://agentflow@127\.0\.0\.1:\d+/agentflow)\s+password (\S+)", line)
        assert found is not None, line
        dsn, password = found.groups()
        assert asyncio.run(_check(dsn, password)).startswith("connected: MariaDB ")
        # The server is the dev process's child (its pid file may live in a short temporary
        # directory: a socket path under a deep home would be too long).
        (pid,) = [
            child.pid
            for child in psutil.Process(process.pid).children(recursive=True)
            if child.name() == "mariadbd"
        ]
    except BaseException:
        process.kill()
        process.wait(30)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()
        raise
    assert _stop(process, reader) == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
