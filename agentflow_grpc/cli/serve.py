"""`agentflow serve`: the gRPC server, on DATABASE_URL or the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import signal

import click

from agentflow_grpc.cli.common import fail
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import AgentFlowError


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

    async with open_app(settings, migrate=migrate) as app:
        server = await ApiServer.start(
            app,
            host=host,
            port=settings.grpc_port if port is None else port,
            max_message_bytes=settings.max_message_bytes,
        )
        database = "embedded PostgreSQL" if app.embedded else "DATABASE_URL"
        click.echo(f"AgentFlow gRPC API listening on {server.address} ({database})", err=True)
        click.echo(f"grpc://{server.address}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop(settings.shutdown_grace)
