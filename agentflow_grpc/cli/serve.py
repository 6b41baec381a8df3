"""`agentflow serve`: the gRPC server, on DATABASE_URL or the embedded PostgreSQL.

It prints where it listens on stdout, `grpc://HOST:PORT` first, then, unless
`AGENTFLOW_METRICS_PORT` is -1, the Prometheus endpoint, `http://HOST:PORT/metrics`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import click

from agentflow_grpc.cli.common import fail
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import AgentFlowError
from agentflow_grpc.observability.exposition import MetricsServer

if TYPE_CHECKING:
    from agentflow_grpc.app import App


@click.command()
@click.option("--host", help="Listen address (default: AGENTFLOW_GRPC_HOST).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: AGENTFLOW_GRPC_PORT).")
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="Bring the schema to the newest revision first.",
)
@click.pass_obj
def serve(settings: Settings, host: str | None, port: int | None, migrate: bool) -> None:
    """Serve the gRPC API until SIGINT or SIGTERM, then drain and stop."""
    try:
        asyncio.run(_serve(settings, host or settings.grpc_host, port, migrate))
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    except OSError as exc:
        raise fail(str(exc)) from None


async def _serve(settings: Settings, host: str, port: int | None, migrate: bool) -> None:
    from agentflow_grpc.api.server import ApiServer
    from agentflow_grpc.app import open_app

    async with open_app(settings, migrate=migrate) as app, serve_metrics(app) as metrics:
        server = await ApiServer.start(
            app,
            host=host,
            port=settings.grpc_port if port is None else port,
            max_message_bytes=settings.max_message_bytes,
        )
        database = "embedded PostgreSQL" if app.embedded else "DATABASE_URL"
        click.echo(f"AgentFlow gRPC API listening on {server.address} ({database})", err=True)
        click.echo(f"grpc://{server.address}")
        if metrics is not None:
            click.echo(f"Prometheus metrics at {metrics.url}", err=True)
            click.echo(metrics.url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop(settings.shutdown_grace)


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
