"""`agentflow dev`: the whole stack in one command, for a laptop or a demo.

It starts what is not given by URL — embedded PostgreSQL (no `DATABASE_URL`), embedded Valkey
(no `REDIS_URL`) — migrates, makes a dev tenant and API key on first start (kept in
`AGENTFLOW_HOME/dev-api-key`, reused by later starts), serves the gRPC API, and puts Envoy in
front of it for REST, server-sent events and the browser page, and serves Prometheus metrics
(unless `AGENTFLOW_METRICS_PORT` is -1). It prints where each listens.
With `--processes N` (`AGENTFLOW_PROCESSES`, default one per usable core) above 1, Envoy's
upstream is the gRPC port that N server processes share (cli/supervisor.py), each with its own
metrics; the embedded servers, migrations and the dev key are made once, here, before them.
With `--mysql` it also runs a MariaDB for `mysql` sources (devstack/mariadb.py: Debian's
mariadb-server, data in `AGENTFLOW_HOME/mariadb`, the same port and password from start to start
while the port is free) and prints its DSN and password.
SIGINT or SIGTERM drains the server, then stops Envoy, Valkey and PostgreSQL, in that order
(and MariaDB last).
One `dev` runs per `AGENTFLOW_HOME` (a lock file); after one was killed (SIGKILL, a crash), the
next start stops what it left running and carries on with the same data.

`agentflow gateway-config` prints the Envoy config that `dev` runs, for an Envoy of your own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import fasteners

from agentflow_grpc.cli.backends import backend_labels, shared_backends
from agentflow_grpc.cli.common import fail
from agentflow_grpc.cli.serve import processes_option, serve_metrics, stop_on_signals
from agentflow_grpc.cli.supervisor import ServerProcesses, SupervisorError, reserve_port
from agentflow_grpc.config import Settings
from agentflow_grpc.devstack.mariadb import MariaDBEndpoint, MariaDBServer
from agentflow_grpc.gateway.envoy import EnvoyGateway, GatewayConfig, Upstream, render
from agentflow_grpc.model.errors import (
    AgentFlowError,
    AlreadyExistsError,
    ConfigurationError,
    UnauthenticatedError,
)
from agentflow_grpc.model.records import Role

if TYPE_CHECKING:
    from agentflow_grpc.app import App

DEV_TENANT = "dev"
DEV_KEY_FILE = "dev-api-key"
DEV_LOCK = "dev.lock"  # held while `dev` runs: one stack per AGENTFLOW_HOME
STACK_FILE = "dev-stack.json"  # where the running stack listens, for tools and scripts
ACTOR = "operator:agentflow-dev"


@dataclass(frozen=True, slots=True)
class DevKey:
    key: str
    created: bool  # made by this start (else: the one kept from an earlier start)


def _origins(*urls: str | None) -> tuple[str, ...]:
    """scheme://host[:port] of each URL given."""
    origins = []
    for url in urls:
        if url:
            parts = urllib.parse.urlsplit(url)
            origins.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(origins)


def gateway_config(settings: Settings, upstreams: list[Upstream]) -> GatewayConfig:
    return GatewayConfig(
        upstreams=upstreams,
        rest_host=settings.rest_host,
        rest_port=settings.rest_port,
        admin_port=settings.gateway_admin_port,
        cors_origins=settings.cors_origins,
        page_connect_origins=_origins(settings.oidc_issuer),
        stream_idle_timeout=settings.gateway_stream_idle_timeout,
        unary_timeout=settings.gateway_unary_timeout,
        max_request_bytes=settings.max_message_bytes,
    )


@click.command()
@processes_option
@click.option(
    "--mysql",
    is_flag=True,
    help="Also run a MariaDB (Debian's mariadb-server; `make mariadb` installs it) for `mysql` "
    "sources, data in AGENTFLOW_HOME/mariadb; the banner shows its DSN and password.",
)
@click.pass_obj
def dev(settings: Settings, processes: int | None, mysql: bool) -> None:
    """Run everything: PostgreSQL, Valkey, the gRPC API and Envoy (REST, SSE, the page)."""
    try:
        count = settings.processes if processes is None else processes
        asyncio.run(_dev(settings, count, mysql=mysql))
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    except (OSError, SupervisorError) as exc:
        raise fail(str(exc)) from None


@click.command("gateway-config")
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="HOST:PORT",
    help="A gRPC server to route to (repeat for several; default: AGENTFLOW_GRPC_HOST:PORT).",
)
@click.pass_obj
def gateway_config_command(settings: Settings, upstreams: tuple[str, ...]) -> None:
    """Print the Envoy config for REST/SSE in front of the gRPC API."""
    try:
        targets = [Upstream.parse(u) for u in upstreams] or [
            Upstream(settings.grpc_host, settings.grpc_port)
        ]
        click.echo(render(gateway_config(settings, targets)), nl=False)
    except AgentFlowError as exc:
        raise fail(exc.message) from None


async def _dev(settings: Settings, processes: int, *, mysql: bool = False) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    lock = fasteners.InterProcessLock(str(settings.home / DEV_LOCK))
    if not lock.acquire(blocking=False):
        raise ConfigurationError(
            f"another `agentflow dev` is running with AGENTFLOW_HOME={settings.home}; stop it, "
            "or give this one another AGENTFLOW_HOME"
        )
    mariadb = MariaDBServer(settings.home / "mariadb") if mysql else None
    try:
        extra: list[str] = []
        if mariadb is not None:
            click.echo("Starting MariaDB …", err=True)
            extra = _mariadb_lines(await asyncio.to_thread(mariadb.start), mariadb)
        if processes > 1:
            await _run_processes(settings, processes, extra)
        else:
            await _run_stack(settings, extra)
    finally:
        if mariadb is not None:
            await asyncio.to_thread(mariadb.stop)
        lock.release()


def _mariadb_lines(endpoint: MariaDBEndpoint, server: MariaDBServer) -> list[str]:
    """The banner's lines for `--mysql`: the DSN of a `mysql` source, and its password."""
    return [
        f"  MySQL      {endpoint.dsn}  password {endpoint.password}",
        f"             (MariaDB {endpoint.version.split('-')[0]}, data in {server.directory},"
        f" log {server.log_path})",
    ]


async def _run_stack(settings: Settings, extra: list[str]) -> None:
    from agentflow_grpc.api.server import ApiServer
    from agentflow_grpc.app import open_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    click.echo("Starting AgentFlow: PostgreSQL, Valkey, migrations …", err=True)
    async with open_app(settings, migrate=True) as app, serve_metrics(app) as metrics:
        key = await dev_api_key(app, settings.home / DEV_KEY_FILE)
        server = await ApiServer.start(
            app,
            host=settings.grpc_host,
            port=settings.grpc_port,
            max_message_bytes=settings.max_message_bytes,
        )
        gateway = EnvoyGateway(
            gateway_config(settings, [Upstream.parse(server.address)]), settings.home / "envoy"
        )
        try:
            await asyncio.to_thread(gateway.start)
            metrics_urls = [] if metrics is None else [metrics.url]
            _write_stack_file(settings.home / STACK_FILE, server.address, gateway, metrics_urls)
            labels = backend_labels(app.embedded, app.redis_embedded)
            _print_banner(settings, server.address, gateway, labels, key, metrics_urls, extra)
            await stop.wait()
            click.echo("Stopping AgentFlow …", err=True)
        finally:
            (settings.home / STACK_FILE).unlink(missing_ok=True)
            await server.stop(settings.shutdown_grace)
            await asyncio.to_thread(gateway.stop)
    click.echo("AgentFlow stopped.", err=True)


async def _run_processes(settings: Settings, count: int, extra: list[str]) -> None:
    """The stack with `count` server processes behind Envoy (see the module doc)."""
    from agentflow_grpc.app import open_app

    stop = stop_on_signals()
    click.echo(f"Starting AgentFlow: PostgreSQL, Valkey, migrations, {count} servers …", err=True)
    with reserve_port(settings.grpc_host, settings.grpc_port) as reserved:
        async with shared_backends(settings, migrate=True) as backends:
            async with open_app(backends.settings) as app:  # for the dev key alone
                key = await dev_api_key(app, settings.home / DEV_KEY_FILE)
            servers = ServerProcesses(
                settings, reserved, count=count, environment=backends.environment
            )
            async with servers:
                gateway = EnvoyGateway(
                    gateway_config(settings, [Upstream.parse(servers.address)]),
                    settings.home / "envoy",
                )
                try:
                    await asyncio.to_thread(gateway.start)
                    address, metrics_urls = servers.address, servers.metrics_urls
                    _write_stack_file(settings.home / STACK_FILE, address, gateway, metrics_urls)
                    labels = backends.labels
                    _print_banner(
                        settings, address, gateway, labels, key, metrics_urls, extra, count
                    )
                    await servers.run_until(stop)
                    click.echo("Stopping AgentFlow …", err=True)
                finally:
                    (settings.home / STACK_FILE).unlink(missing_ok=True)
                    await servers.stop()
                    await asyncio.to_thread(gateway.stop)
    click.echo("AgentFlow stopped.", err=True)


async def dev_api_key(app: App, path: Path) -> DevKey:
    """The kept dev key if it still works, else a new admin key of tenant `dev` (made if need
    be), written to `path` readable by its owner only."""
    if path.exists():
        kept = path.read_text(encoding="utf-8").strip()
        try:
            await app.tenants.authenticate(kept)
            return DevKey(kept, created=False)
        except UnauthenticatedError:
            pass  # revoked, or the database was reset: make a new one
    with contextlib.suppress(AlreadyExistsError):  # made by an earlier start
        await app.tenants.create_tenant(DEV_TENANT, actor=ACTOR)
    _, key = await app.tenants.create_api_key(
        DEV_TENANT, role=Role.ADMIN, description="agentflow dev", actor=ACTOR
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(key + "\n")
    return DevKey(key, created=True)


def _write_stack_file(
    path: Path, grpc_address: str, gateway: EnvoyGateway, metrics_urls: list[str]
) -> None:
    stack = {
        "grpc": grpc_address,
        "rest": gateway.base_url,
        "page": f"{gateway.base_url}/",
        "metrics": metrics_urls[0] if metrics_urls else None,  # the first process's
        "metrics_all": metrics_urls,  # every server process's, in order
        "envoy_admin": gateway.admin_url,
        "envoy_pid": gateway.pid,
        "api_key_file": str(path.parent / DEV_KEY_FILE),
    }
    path.write_text(json.dumps(stack, indent=2) + "\n", encoding="utf-8")


def _print_banner(
    settings: Settings,
    grpc_address: str,
    gateway: EnvoyGateway,
    labels: tuple[str, str],
    key: DevKey,
    metrics_urls: list[str],
    extra: list[str],
    processes: int = 1,
) -> None:
    database, redis = labels
    kept = "new" if key.created else "kept from an earlier start"
    servers = f" ({processes} server processes)" if processes > 1 else ""
    metrics = " ".join(metrics_urls) if metrics_urls else "off (AGENTFLOW_METRICS_PORT=-1)"
    lines = [
        "",
        f"AgentFlow is running ({database}, {redis}; data in {settings.home})",
        f"  gRPC API   {grpc_address}{servers}",
        f"  REST API   {gateway.base_url}/v1",
        f"  Web page   {gateway.base_url}/#api_key={key.key}",
        f"  API key    {key.key}  (tenant {DEV_TENANT!r}, admin, {kept}: "
        f"{settings.home / DEV_KEY_FILE})",
        f"  Envoy      admin {gateway.admin_url}, log {gateway.log_path}",
        f"  Metrics    {metrics}",
        *extra,
        "",
        f"  curl -H 'x-api-key: {key.key}' {gateway.base_url}/v1/workflows",
        "",
        "Ctrl-C stops everything.",
    ]
    click.echo("\n".join(lines))
