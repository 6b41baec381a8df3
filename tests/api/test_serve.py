"""`agentflow serve` as a real process: it migrates, prints its address (and its metrics'),
serves, and drains on SIGTERM (health NOT_SERVING, a running stream ends recorded as cancelled),
exiting 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.storage import create_database

from agentflow_grpc._gen.agentflow.v1 import (
    execution_pb2,
    execution_pb2_grpc,
    source_pb2,
    source_pb2_grpc,
)
from agentflow_grpc._gen.agentflow.v1 import (
    health_pb2 as agentflow_health_pb2,
)
from agentflow_grpc._gen.agentflow.v1 import (
    health_pb2_grpc as agentflow_health_pb2_grpc,
)
from agentflow_grpc.model.records import Role
from agentflow_grpc.storage import tenants
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.testing import FakeProviderServer

pytestmark = pytest.mark.slow  # every test starts an `agentflow serve` process: seconds each


def environment(dsn: str, home: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL" and not name.startswith("AGENTFLOW_")
    }
    env.update(
        DATABASE_URL=dsn,
        AGENTFLOW_HOME=str(home),
        AGENTFLOW_SECRET_KEYS=f"k1:{Keyring.generate_key()}",
        AGENTFLOW_GRPC_PORT="0",
        AGENTFLOW_SHUTDOWN_GRACE="1",
        AGENTFLOW_LOG_FORMAT="json",
        AGENTFLOW_PROCESSES="1",  # the one-process server (tests/cli/test_serve_processes.py: N)
    )
    return env


@pytest.fixture
def served(postgres_dsn: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    dsn = asyncio.run(create_database(postgres_dsn))
    env = environment(dsn, tmp_path)
    log = tmp_path / "serve.log"  # a file, not a pipe nobody reads: the server must not block
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentflow_grpc", "serve"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()  # blocks until the server is up
        assert line.startswith("grpc://"), (line, log.read_text())
        yield process, line.removeprefix("grpc://"), dsn
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()


async def make_keys(dsn: str, tenant: str) -> dict[str, str]:
    """A runner and an editor key of a new tenant, made through the storage layer."""
    database = await Database.connect(dsn)
    try:
        async with database.system() as connection:
            created = await tenants.create_tenant(connection, tenant, actor="operator:test")
            keys = {}
            for role in (Role.RUNNER, Role.EDITOR):
                _, keys[role.value] = await tenants.create_api_key(
                    connection, created.id, role=role, actor="operator:test"
                )
        return keys
    finally:
        await database.close()


async def test_serve_migrates_serves_and_drains_on_sigterm(
    served: tuple[subprocess.Popen[str], str, str],
    tmp_path: Path,
    provider: FakeProviderServer,
) -> None:
    process, address, dsn = served
    assert process.stdout is not None
    metrics_url = process.stdout.readline().strip()  # printed right after the gRPC address
    host = address.rpartition(":")[0]
    assert metrics_url.startswith(f"http://{host}:"), metrics_url
    assert metrics_url.endswith("/metrics")
    keys = await make_keys(dsn, "serve-co")
    key, editor_key = keys["runner"], keys["editor"]
    provider.add_rule(contains="[slow]", delay=30)
    spec = struct_pb2.Struct()
    spec.update(
        {
            "api_version": "agentflow/v1",
            "name": "slow",
            "outputs": {"text": {"from": "nodes.wait.output.text"}},
            "nodes": [
                {"id": "start", "type": "input"},
                {"id": "wait", "type": "llm", "source": "fake", "config": {"prompt": "[slow]"}},
            ],
            "edges": [{"from": "start", "to": "wait"}],
        }
    )
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        ours = agentflow_health_pb2_grpc.HealthServiceStub(channel)
        report = await ours.GetHealth(agentflow_health_pb2.GetHealthRequest())
        assert report.status == "SERVING"
        assert [d.name for d in report.dependencies] == ["database", "redis"]
        # Its metrics have counted those calls.
        async with httpx.AsyncClient(timeout=10) as http:
            scraped = await http.get(metrics_url)
        assert scraped.status_code == 200
        health_checks = 'code="OK",method="/grpc.health.v1.Health/Check"'
        assert f"agentflow_rpc_requests_total{{{health_checks}}} 1.0" in scraped.text

        executions = execution_pb2_grpc.ExecutionServiceStub(channel)
        # The spec names source `fake`: make it over the API.
        config = struct_pb2.Struct()
        config.update({"base_url": f"{provider.url}/v1", "model": "fake-model"})
        await source_pb2_grpc.SourceServiceStub(channel).CreateSource(
            source_pb2.CreateSourceRequest(
                source=source_pb2.Source(
                    display_name="fake", type="openai", config=config, secrets={"api_key": "x"}
                )
            ),
            metadata=(("x-api-key", editor_key),),
        )
        call = executions.ExecuteWorkflow(
            execution_pb2.ExecuteWorkflowRequest(spec=spec), metadata=(("x-api-key", key),)
        )
        seen = []

        async def drain_while_a_run_is_in_flight() -> None:
            async for event in call:
                seen.append(event)
                if event.type == "node_started" and event.node_id == "wait":
                    process.send_signal(signal.SIGTERM)

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await drain_while_a_run_is_in_flight()
        # The run is handed over (to another replica, or this server once restarted), not
        # cancelled: the call says so, and where to follow the run.
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert seen[-1].type == "stream_error"
        assert seen[-1].data["error"]["code"] == "execution.moved"
        assert seen[-1].data["resume_after_sequence"] == seen[-2].sequence

    assert process.wait(timeout=30) == 0


def test_serve_reports_a_port_in_use(postgres_dsn: str, tmp_path: Path) -> None:
    dsn = asyncio.run(create_database(postgres_dsn))
    env = environment(dsn, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "agentflow_grpc", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
