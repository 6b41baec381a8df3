"""Server replicas as real processes: `agentflow serve` twice (or more) on one PostgreSQL and one
Valkey, with Envoy in front of them (round robin). Each can be killed like a crashed machine.

The test's tenant and API key are made through the storage layer; everything else goes through
the replicas' APIs.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from agentflow_grpc.gateway.envoy import EnvoyGateway, GatewayConfig, Upstream
from support.api_helpers import Client, client_of

AGENTFLOW = Path(sys.executable).parent / "agentflow"
_LISTENING = re.compile(r"^grpc://(\S+)$")


@dataclass
class Replica:
    process: subprocess.Popen[str]
    address: str
    log: Path
    channel: grpc.aio.Channel | None = None
    _reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self) -> Client:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.address)
        return client_of(self.channel)

    def kill(self) -> None:
        """SIGKILL: no drain, no exit handler, its runs left as they were."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def replica_environment(dsn: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AGENTFLOW_") and name not in ("DATABASE_URL", "REDIS_URL")
    }
    environment.update(
        DATABASE_URL=dsn,
        REDIS_URL=redis_url,
        AGENTFLOW_REDIS_PREFIX=prefix,
        AGENTFLOW_GRPC_PORT="0",
        AGENTFLOW_LOG_FORMAT="json",
        AGENTFLOW_SHUTDOWN_GRACE="1",
        AGENTFLOW_NODE_TIMEOUT="60",
        **extra,
    )
    return environment


def start_replica(environment: dict[str, str], log: Path, timeout: float = 60) -> Replica:
    with log.open("w") as log_file:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(AGENTFLOW), "serve", "--no-migrate"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            match = _LISTENING.match(line.strip())
            if match:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(timeout) or not found:
        process.kill()
        raise AssertionError(f"a replica did not start: {log.read_text()[-2000:]}")
    return Replica(process, found[0], log, _reader=reader)


@dataclass
class Cluster:
    replicas: list[Replica]
    gateway: EnvoyGateway
    prefix: str  # the Redis key prefix the replicas share
    key: str  # an admin API key of the test's tenant

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self.key),)

    def runner_of(self, holder: str) -> Replica:
        """The replica whose lease value (`host:pid:nonce`) is `holder`."""
        pid = int(holder.split(":")[1])
        return next(r for r in self.replicas if r.pid == pid)

    def other_than(self, replica: Replica) -> Replica:
        return next(r for r in self.replicas if r is not replica and r.alive())


def shared_secret_keys() -> str:
    return "replicas:" + base64.b64encode(os.urandom(32)).decode()


@contextmanager
def cluster(
    dsn: str, redis_url: str, key: str, directory: Path, *, size: int = 2, **extra: str
) -> Iterator[Cluster]:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    environment = replica_environment(
        dsn, redis_url, prefix, AGENTFLOW_SECRET_KEYS=shared_secret_keys(), **extra
    )
    directory.mkdir(parents=True, exist_ok=True)
    replicas: list[Replica] = []
    gateway: EnvoyGateway | None = None
    try:
        for number in range(size):
            replicas.append(start_replica(environment, directory / f"replica-{number}.log"))
        gateway = EnvoyGateway(
            GatewayConfig(
                upstreams=[Upstream.parse(r.address) for r in replicas],
                rest_port=0,
                admin_port=0,
                health_check_interval=0.5,
            ),
            directory / "envoy",
            concurrency=1,
        )
        gateway.start()
        yield Cluster(replicas, gateway, prefix, key)
    finally:
        if gateway is not None:
            gateway.stop()
        for replica in replicas:
            replica.stop()
        leftovers = [r.pid for r in replicas if psutil.pid_exists(r.pid) and r.alive()]
        assert not leftovers, leftovers
