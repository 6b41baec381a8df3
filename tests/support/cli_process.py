"""`agentflow` as a real process, for the tests of commands that call a running server: the
server runs in the test's event loop, so the command runs as a subprocess awaited with asyncio
(a blocking call would stop the server from answering)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def agentflow(
    *args: str, home: Path, cwd: Path, api_key: str | None = None, grpc_port: int | None = None
) -> Result:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL" and not name.startswith("AGENTFLOW_")
    }
    environment.update(AGENTFLOW_HOME=str(home), AGENTFLOW_LOG_FORMAT="json")
    if api_key is not None:
        environment["AGENTFLOW_API_KEY"] = api_key
    if grpc_port is not None:
        environment["AGENTFLOW_GRPC_PORT"] = str(grpc_port)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentflow_grpc",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
        cwd=cwd,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def assert_refused(result: Result, fragment: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
