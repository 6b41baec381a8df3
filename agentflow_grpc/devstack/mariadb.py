"""A MariaDB server (Debian's `mariadb-server` package) in a data directory of ours.

For the tests (a throw-away server per session) and `agentflow dev --mysql`: `mariadb-install-db`
makes the data directory once, then `mariadbd` serves it on 127.0.0.1 at a free port (the one
used last time when it is free) and on a Unix socket of its own, with one database and one user
with a password, made (or kept) at each start through an init file. Nothing is read from the
machine's MariaDB configuration (`--no-defaults`) and its own service is not touched.

One process owns a data directory (an flock on `owner.lock`); a server left running by an owner
that died is stopped before a new one starts. `stop()` shuts it down (SIGTERM: InnoDB finishes
and exits cleanly); `delete=True` removes the directory too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import fasteners

from agentflow_grpc.devstack.processes import live_process, stop_leftover
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.devstack.mariadb")

INSTALL_HINT = (
    "`make mariadb` installs it (Debian's mariadb-server: apt-get install mariadb-server)"
)
HOST = "127.0.0.1"
DATA, RUN = "data", "run"  # the server's files, and its socket, pid, log and init file
OWNER_LOCK, STATE_FILE = "owner.lock", "server.json"  # the owner; the port and password kept
PID_FILE, LOG_FILE, INIT_FILE, SOCKET = "mariadbd.pid", "mariadbd.log", "init.sql", "mariadbd.sock"
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")
_PASSWORD = re.compile(r"[A-Za-z0-9_\-]{8,64}")
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes


@dataclass(frozen=True, slots=True)
class MariaDBEndpoint:
    """Where a started server listens, and who may log in."""

    host: str
    port: int
    socket: Path
    database: str
    user: str
    password: str
    version: str

    @property
    def dsn(self) -> str:
        """A `mysql` source's `config.dsn` (the password is its `password` secret)."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def _binary(name: str) -> str:
    found = shutil.which(name, path=_SEARCH_PATH)
    if found is None:
        raise ConfigurationError(f"MariaDB is not installed (no `{name}` found): {INSTALL_HINT}")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _handshake(port: int) -> bytes | None:
    """The first packet a server at `port` sends (its greeting: protocol 10, then its version),
    or None while nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as connection:
            header = connection.recv(4)
            if len(header) < 4:
                return None
            length = int.from_bytes(header[:3], "little")
            payload = b""
            while len(payload) < length:
                chunk = connection.recv(length - len(payload))
                if not chunk:
                    return None
                payload += chunk
            return payload
    except OSError:
        return None


class MariaDBServer:
    """A MariaDB server kept in `directory`; a context manager that starts and stops it."""

    def __init__(
        self,
        directory: Path,
        *,
        database: str = "agentflow",
        user: str = "agentflow",
        password: str | None = None,
        delete: bool = False,
    ) -> None:
        if not _NAME.fullmatch(database) or not _NAME.fullmatch(user):
            raise ConfigurationError("MariaDB database and user names are letters, digits and _")
        if password is not None and not _PASSWORD.fullmatch(password):
            raise ConfigurationError("a MariaDB password here is 8 to 64 letters, digits, _ or -")
        self.directory = directory
        self._database, self._user, self._password = database, user, password
        self._delete = delete
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: fasteners.InterProcessLock | None = None
        self._run_directory: Path | None = None
        self._endpoint: MariaDBEndpoint | None = None

    @property
    def endpoint(self) -> MariaDBEndpoint:
        if self._endpoint is None:
            raise RuntimeError("the MariaDB server is not running")
        return self._endpoint

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    def start(self, timeout: float = 60.0) -> MariaDBEndpoint:
        """Install the data directory if need be, start the server, wait until it answers."""
        mariadbd, install_db = _binary("mariadbd"), _binary("mariadb-install-db")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create {self.directory} for MariaDB: {exc.strerror or exc}"
            ) from None
        lock = fasteners.InterProcessLock(str(self.directory / OWNER_LOCK))
        if not lock.acquire(blocking=False):
            raise ConfigurationError(f"another process runs the MariaDB of {self.directory}")
        self._lock = lock
        try:
            self._stop_leftover()
            if not (self.directory / DATA / "mysql").is_dir():
                self._install(install_db)
            self._endpoint = self._serve(mariadbd, timeout)
        except BaseException:
            self.stop()
            raise
        log.info("mariadb.started", directory=str(self.directory), port=self._endpoint.port)
        return self._endpoint

    def stop(self) -> None:
        process, self._process = self._process, None
        self._endpoint = None
        if process is not None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.info("mariadb.stopped", directory=str(self.directory))
        run_directory, self._run_directory = self._run_directory, None
        if run_directory is not None and run_directory != self.directory / RUN:
            shutil.rmtree(run_directory, ignore_errors=True)
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
        if self._delete and lock is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> MariaDBEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the steps ---

    def _stop_leftover(self) -> None:
        """Stop a server whose owner died without stopping it (its pid file is still there)."""
        for pid_file in (self.directory / RUN / PID_FILE, *self._state_run_pid_files()):
            try:
                pid = int(pid_file.read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                continue
            process = live_process(pid, name_has="mariadbd")
            if process is not None:
                stop_leftover(process, f"mariadbd of {self.directory}", timeout=60)

    def _state_run_pid_files(self) -> list[Path]:
        run = self._state().get("run_directory")
        return [Path(run) / PID_FILE] if isinstance(run, str) else []

    def _install(self, install_db: str) -> None:
        data = self.directory / DATA
        shutil.rmtree(data, ignore_errors=True)  # an install that did not finish
        command = [
            install_db,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--skip-name-resolve",
            *_as_root(),
        ]
        log.info("mariadb.installing", data_directory=str(data))
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ConfigurationError(f"mariadb-install-db failed ({done.returncode}):\n{tail}")

    def _serve(self, mariadbd: str, timeout: float) -> MariaDBEndpoint:
        state = self._state()
        password = self._password or state.get("password") or secrets.token_urlsafe(18)
        if not isinstance(password, str) or not _PASSWORD.fullmatch(password):
            password = secrets.token_urlsafe(18)
        kept = state.get("port")
        port = kept if isinstance(kept, int) and _port_is_free(kept) else _free_port()
        run = self._run_directory = self._runtime_directory()
        init = run / INIT_FILE
        init.touch(mode=0o600)
        init.write_text(self._init_sql(password), encoding="utf-8")
        self._write_state({"port": port, "password": password, "run_directory": str(run)})
        self.log_path.unlink(missing_ok=True)
        command = [
            mariadbd,
            "--no-defaults",
            f"--datadir={self.directory / DATA}",
            f"--socket={run / SOCKET}",
            f"--pid-file={run / PID_FILE}",
            f"--log-error={self.log_path}",
            f"--init-file={init}",
            f"--tmpdir={run}",
            f"--port={port}",
            f"--bind-address={HOST}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=500",
            *_as_root(),
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the terminal's Ctrl-C is for us: we stop it, in order
        )
        try:
            greeting = self._wait_until_ready(port, timeout)
        finally:
            init.unlink(missing_ok=True)  # read at start only; it holds the password
        version = greeting[1:].split(b"\0", 1)[0].decode("ascii", "replace")
        return MariaDBEndpoint(
            host=HOST,
            port=port,
            socket=run / SOCKET,
            database=self._database,
            user=self._user,
            password=password,
            version=version.removeprefix("5.5.5-"),  # MariaDB's prefix for old clients
        )

    def _runtime_directory(self) -> Path:
        """`directory/run`, or a short temporary one when a socket path there would be too
        long for a Unix socket."""
        run = self.directory / RUN
        if len(str(run / SOCKET)) <= _SOCKET_PATH_MAX:
            run.mkdir(mode=0o700, exist_ok=True)
            return run
        return Path(tempfile.mkdtemp(prefix="agentflow-mariadb-"))

    def _wait_until_ready(self, port: int, timeout: float) -> bytes:
        """The server's greeting, once it accepts connections (after the init file ran)."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConfigurationError(
                    f"mariadbd exited ({self._process.returncode}) before it was ready:\n"
                    f"{self._log_tail()}"
                )
            greeting = _handshake(port)
            if greeting and greeting[0] == 10:  # protocol version 10: a server that serves
                return greeting
            time.sleep(0.1)
        raise ConfigurationError(
            f"mariadbd did not answer on {HOST}:{port} within {timeout:g} s:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.strip().splitlines()[-lines:])

    def _init_sql(self, password: str) -> str:
        """The database and the user (on TCP from 127.0.0.1 and on the socket), with the
        password; kept as they are when they exist, the password set again."""
        database, user = self._database, self._user
        lines = [f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4;"]
        for host in ("127.0.0.1", "localhost"):
            account = f"'{user}'@'{host}'"
            lines += [
                f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY '{password}';",
                f"ALTER USER {account} IDENTIFIED BY '{password}';",
                f"GRANT ALL PRIVILEGES ON `{database}`.* TO {account};",
            ]
        return "\n".join(lines) + "\n"

    def _state(self) -> dict[str, object]:
        try:
            state = json.loads((self.directory / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self, state: dict[str, object]) -> None:
        path = self.directory / STATE_FILE
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(state, file)


def _as_root() -> list[str]:
    """mariadbd refuses to run as root unless told to (tests and CI run as root)."""
    with contextlib.suppress(AttributeError):  # no geteuid: not a Unix
        if os.geteuid() == 0:
            return ["--user=root"]
    return []
