"""Server replicas as real processes: ``agentflow serve`` started N times on one PostgreSQL and
one Valkey, each on a free port, for tests and benchmarks.

    environment = replica_environment(dsn, redis_url, redis_prefix="test-1", workers=4)
    with Replicas(environment, tmp_path / "replicas") as replicas:
        first, second = replicas.start(2)
        ...  # gRPC to first.address; first.kill() (SIGKILL), first.stop() (SIGTERM)
        replacement = replicas.restart(second)

The database must be migrated first (replicas run ``serve --no-migrate``). Every replica the
launcher starts, it stops: :meth:`Replicas.stop` (or leaving the ``with`` block) stops those
still running, SIGTERM first, SIGKILL if one does not exit in time.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from agentflow_grpc.config import ENV_PREFIX, Settings

__all__ = [
    "AGENTFLOW",
    "Replica",
    "ReplicaStartError",
    "Replicas",
    "new_secret_keys",
    "replica_environment",
]

AGENTFLOW = Path(sys.executable).parent / "agentflow"  # the console script beside this Python
_LISTENING = re.compile(r"^grpc://(\S+)$")  # what `agentflow serve` prints once it listens
_GIVEN = ("database_url", "redis_url")  # replica_environment's arguments, not keywords


class ReplicaStartError(RuntimeError):
    """A replica exited, or did not say where it listens in time; the message ends its log."""


def new_secret_keys(key_id: str = "replicas") -> str:
    """A fresh ``AGENTFLOW_SECRET_KEYS`` value (one random key): the replicas must share one, or
    one cannot open the source secrets another sealed."""
    return f"{key_id}:" + base64.b64encode(os.urandom(32)).decode()


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def environment_without_settings() -> dict[str, str]:
    """This process's environment without AgentFlow's settings (``AGENTFLOW_*``,
    ``DATABASE_URL``, ``REDIS_URL``): what a child server starts from, so that the caller's
    own settings do not leak into it."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(ENV_PREFIX) and name not in ("DATABASE_URL", "REDIS_URL")
    }


def replica_environment(database_url: str, redis_url: str, /, **settings: object) -> dict[str, str]:
    """The environment of replicas sharing ``database_url`` and ``redis_url``.

    This process's environment without AgentFlow's settings, then ``DATABASE_URL``,
    ``REDIS_URL``, shared secret keys (:func:`new_secret_keys`), a gRPC port picked by each
    replica (``AGENTFLOW_GRPC_PORT=0``) and JSON log lines; then ``settings``, named as the
    :class:`~agentflow_grpc.config.Settings` fields (``workers=4`` is ``AGENTFLOW_WORKERS=4``),
    which override those defaults.
    """
    unknown = [n for n in settings if n not in Settings.model_fields or n in _GIVEN]
    if unknown:
        raise ValueError(f"not settings replica_environment takes as keywords: {unknown}")
    environment = environment_without_settings()
    environment.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        AGENTFLOW_SECRET_KEYS=new_secret_keys(),
        AGENTFLOW_GRPC_PORT="0",
        AGENTFLOW_LOG_FORMAT="json",
        AGENTFLOW_PROCESSES="1",  # a replica is one server process, whatever the cores
    )
    environment.update({ENV_PREFIX + n.upper(): _env_value(v) for n, v in settings.items()})
    return environment


@dataclass(eq=False)
class Replica:
    """One ``agentflow serve`` process, listening for gRPC on :attr:`address` (``host:port``)."""

    number: int  # its place among its launcher's replicas, kept across restarts
    process: subprocess.Popen[str]
    address: str
    log: Path  # the server's stderr: its log lines
    _reader: threading.Thread = field(repr=False)  # drains stdout, so the pipe never fills

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, like a crashed machine: no drain, no exit handler, its runs left as they
        were."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close()

    def terminate(self) -> None:
        """SIGTERM, if it runs: the server drains and exits, as in a rolling deploy; returns at
        once (:meth:`stop` waits)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL if it has not exited after ``timeout`` seconds; idempotent."""
        self.terminate()
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._close()

    def _close(self) -> None:
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _launch(
    command: Sequence[str],
    environment: Mapping[str, str],
    log: Path,
    *,
    number: int,
    timeout: float,
    append: bool = False,
) -> Replica:
    """Start one replica and wait until it says where it listens."""
    with log.open("a" if append else "w") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            list(command), env=dict(environment), stdout=subprocess.PIPE, stderr=log_file, text=True
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

    reader = threading.Thread(target=read, name=f"replica-{number}-stdout", daemon=True)
    reader.start()
    replica = Replica(number, process, "", log, reader)
    if not ready.wait(timeout) or not found:
        replica.kill()
        raise ReplicaStartError(f"a replica did not start:\n{log.read_text()[-2000:]}")
    replica.address = found[0]
    return replica


class Replicas:
    """``agentflow serve`` processes sharing one ``environment`` (see
    :func:`replica_environment`), their logs in ``directory`` (``replica-<number>.log``).

    Use as ``with`` (leaving it stops them all) or call :meth:`stop`.
    """

    def __init__(
        self,
        environment: Mapping[str, str],
        directory: Path,
        *,
        command: Sequence[str] = (str(AGENTFLOW), "serve", "--no-migrate", "--processes=1"),
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.environment = dict(environment)
        self.directory = directory
        self.command = tuple(command)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._replicas: list[Replica] = []

    def __len__(self) -> int:
        return len(self._replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(list(self._replicas))

    def __getitem__(self, index: int) -> Replica:
        return self._replicas[index]

    @property
    def addresses(self) -> list[str]:
        """Every replica's gRPC ``host:port``, in order (stopped ones included)."""
        return [replica.address for replica in self._replicas]

    def start(self, count: int = 1) -> list[Replica]:
        """Start ``count`` more replicas, one after another, each waited for; return them.

        Raises :class:`ReplicaStartError` if one does not start (those started before it keep
        running until :meth:`stop`).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        started = []
        for _ in range(count):
            number = len(self._replicas)
            log = self.directory / f"replica-{number}.log"
            replica = _launch(
                self.command, self.environment, log, number=number, timeout=self.start_timeout
            )
            self._replicas.append(replica)
            started.append(replica)
        return started

    def restart(self, replica: Replica, *, kill: bool = False) -> Replica:
        """Stop ``replica`` if it runs (SIGTERM, or SIGKILL if ``kill``), then start a new
        process in its place: same number and log (appended to), a new pid and port."""
        index = self._replicas.index(replica)
        if kill:
            replica.kill()
        else:
            replica.stop(self.stop_timeout)
        new = _launch(
            self.command,
            self.environment,
            replica.log,
            number=replica.number,
            timeout=self.start_timeout,
            append=True,
        )
        self._replicas[index] = new
        return new

    def stop(self) -> None:
        """Stop every replica still running: SIGTERM to all at once, then wait for each
        (SIGKILL after ``stop_timeout`` seconds); idempotent."""
        for replica in self._replicas:
            replica.terminate()
        for replica in self._replicas:
            replica._wait(self.stop_timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
