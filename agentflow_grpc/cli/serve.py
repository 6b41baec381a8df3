"""`agentflow serve`: the gRPC server, on DATABASE_URL or the embedded PostgreSQL.

It prints where it listens on stdout, `grpc://HOST:PORT` first, then, unless
`AGENTFLOW_METRICS_PORT` is -1, the Prometheus endpoint, `http://HOST:PORT/metrics`.

`--processes N` (`AGENTFLOW_PROCESSES`, default one per usable core): with N > 1 this process
supervises N server processes sharing the port (cli/supervisor.py), after starting once what
they share (cli/backends.py); it prints the address once, then every process's metrics URL.
With 1, this process serves, as it always did.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import click

from agentflow_grpc.cli.backends import backend_labels, shared_backends
from agentflow_grpc.cli.common import fail
from agentflow_grpc.cli.supervisor import (
    ServerProcesses,
    SupervisorError,
    reserve_port,
)
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import AgentFlowError
from agentflow_grpc.observability.exposition import MetricsServer
from agentflow_grpc.observability.logging import get_logger

if TYPE_CHECKING:
    from agentflow_grpc.app import App

log = get_logger("agentflow.cli.serve")

ORPHAN_CHECK_INTERVAL = 1.0  # seconds between a supervised server's looks at its supervisor

processes_option = click.option(
    "--processes",
    type=click.IntRange(1, 1024),
    help="Server processes sharing the gRPC port (default: AGENTFLOW_PROCESSES, one per "
    "usable core); 1: this process serves.",
)


@click.command()
@click.option("--host", help="Listen address (default: AGENTFLOW_GRPC_HOST).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: AGENTFLOW_GRPC_PORT).")
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="Bring the schema to the newest revision first.",
)
@processes_option
@click.option(
    "--allow-plaintext",
    is_flag=True,
    help="Listen without TLS on an address that is not loopback (AGENTFLOW_ALLOW_PLAINTEXT); "
    "a warning is logged.",
)
@click.option("--supervisor", type=int, hidden=True)  # the pid of this process's supervisor
@click.pass_obj
def serve(
    settings: Settings,
    host: str | None,
    port: int | None,
    migrate: bool,
    processes: int | None,
    allow_plaintext: bool,
    supervisor: int | None,
) -> None:
    """Serve the gRPC API until SIGINT or SIGTERM, then drain and stop."""
    if allow_plaintext:
        settings = settings.model_copy(update={"allow_plaintext": True})
    host = host or settings.grpc_host
    port = settings.grpc_port if port is None else port
    count = settings.processes if processes is None else processes
    try:
        if count > 1 and supervisor is None:
            asyncio.run(_supervise(settings, host, port, migrate, count))
        else:
            asyncio.run(_serve(settings, host, port, migrate, supervisor=supervisor))
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    except (OSError, SupervisorError) as exc:
        raise fail(str(exc)) from None


async def _serve(
    settings: Settings, host: str, port: int, migrate: bool, *, supervisor: int | None = None
) -> None:
    """One server in this process. With `supervisor` (its pid): one of a supervisor's
    processes, sharing the port (SO_REUSEPORT) and stopping when the supervisor is gone; it
    says where it listens on stdout only (the supervisor speaks for all)."""
    from agentflow_grpc.api.server import ApiServer
    from agentflow_grpc.api.tls import server_tls
    from agentflow_grpc.app import open_app

    supervised = supervisor is not None
    tls = server_tls(settings, host)  # refused before anything starts
    async with open_app(settings, migrate=migrate) as app, serve_metrics(app) as metrics:
        server = await ApiServer.start(
            app,
            host=host,
            port=port,
            max_message_bytes=settings.max_message_bytes,
            reuse_port=supervised,
            tls=tls,
        )
        if not supervised:
            database, _ = backend_labels(app.embedded, app.redis_embedded)
            click.echo(f"AgentFlow gRPC API listening on {server.address} ({database})", err=True)
        click.echo(f"grpc://{server.address}")
        if metrics is not None:
            if not supervised:
                click.echo(f"Prometheus metrics at {metrics.url}", err=True)
            click.echo(metrics.url)
        stop = stop_on_signals()
        watch = None
        if supervisor is not None:
            watch = asyncio.create_task(_stop_when_orphaned(supervisor, stop))
        await stop.wait()
        if watch is not None:
            watch.cancel()
        await server.stop(settings.shutdown_grace)


async def _supervise(settings: Settings, host: str, port: int, migrate: bool, count: int) -> None:
    """`count` server processes on one port (see the module doc)."""

    from agentflow_grpc.api.tls import server_tls

    server_tls(settings, host)  # a start without TLS where it needs it is refused once, here
    stop = stop_on_signals()
    with reserve_port(host, port) as reserved:
        click.echo(f"Starting {count} AgentFlow server processes on {reserved.address} …", err=True)
        async with (
            shared_backends(settings, migrate=migrate) as backends,
            ServerProcesses(
                settings, reserved, count=count, environment=backends.environment
            ) as processes,
        ):
            click.echo(
                f"AgentFlow gRPC API listening on {processes.address} ({count} processes, "
                f"{', '.join(backends.labels)})",
                err=True,
            )
            click.echo(f"grpc://{processes.address}")
            for number, url in enumerate(processes.metrics_urls, start=1):
                click.echo(f"Prometheus metrics of process {number} at {url}", err=True)
                click.echo(url)
            await processes.run_until(stop)
            click.echo(f"Stopping {count} AgentFlow server processes …", err=True)
    click.echo("AgentFlow stopped.", err=True)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _stop_when_orphaned(supervisor: int, stop: asyncio.Event) -> None:
    """Set `stop` once this process's supervisor is gone (killed: it could not pass a signal
    on), so no server outlives it."""
    while os.getppid() == supervisor:
        await asyncio.sleep(ORPHAN_CHECK_INTERVAL)
    log.warning("server.supervisor_gone", supervisor=supervisor)
    stop.set()


@asynccontextmanager
async def serve_metrics(app: App) -> AsyncIterator[MetricsServer | None]:
    """The app's `/metrics` on AGENTFLOW_METRICS_HOST:PORT for as long as the block runs (so
    through a server's drain); None when AGENTFLOW_METRICS_PORT is -1."""
    settings = app.settings
    if settings.metrics_port < 0:
        yield None
        return
    server = await MetricsServer.start(
        app.metrics, host=settings.metrics_host, port=settings.metrics_port
    )
    try:
        yield server
    finally:
        await server.stop()
