"""`/metrics` over HTTP: what Prometheus scrapes, served on the app's own event loop.

`MetricsServer.start(metrics, host, port)` listens (port 0: a free one; `url` says where) and
answers `GET /metrics` (and `HEAD`) with `Metrics.exposition()`: the queue's depth read from
Redis first, then the registry in the format the scraper's `Accept` asks for (Prometheus's
text format, or OpenMetrics). Anything else is 404 (405 for another method on `/metrics`).
One request per connection; a client that sends nothing for `READ_TIMEOUT` seconds is dropped.
`agentflow serve` and `agentflow dev` start one when `AGENTFLOW_METRICS_PORT` is not -1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass

from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metrics import Metrics

log = get_logger("agentflow.metrics")

PATH = "/metrics"
READ_TIMEOUT = 10.0  # seconds a client has to send its request line and headers
_MAX_HEADERS = 100


@dataclass
class MetricsServer:
    metrics: Metrics
    server: asyncio.Server
    address: str  # host:port actually bound

    @property
    def url(self) -> str:
        return f"http://{self.address}{PATH}"

    @classmethod
    async def start(cls, metrics: Metrics, *, host: str, port: int) -> MetricsServer:
        """Listen on `host:port` (0: a free port); OSError naming the address when it cannot."""
        try:
            server = await asyncio.start_server(functools.partial(_handle, metrics), host, port)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        bound = server.sockets[0].getsockname()[1]
        started = cls(metrics, server, f"{host}:{bound}")
        log.info("metrics.serving", url=started.url)
        return started

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def _handle(
    metrics: Metrics, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            request_line = (await reader.readline()).decode("latin-1").split()
            headers: dict[str, str] = {}
            for _ in range(_MAX_HEADERS):
                line = (await reader.readline()).decode("latin-1").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        await _answer(metrics, writer, request_line, headers)
    except (TimeoutError, ConnectionError):
        pass  # a client that went quiet or away: nothing to answer
    except Exception:
        log.exception("metrics.scrape_failed")
        with contextlib.suppress(Exception):
            await _respond(writer, 500, b"the metrics could not be rendered\n")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _answer(
    metrics: Metrics,
    writer: asyncio.StreamWriter,
    request_line: list[str],
    headers: dict[str, str],
) -> None:
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/"):
        await _respond(writer, 400, b"bad request\n")
        return
    method, target, _ = request_line
    if target.partition("?")[0] != PATH:
        await _respond(writer, 404, f"not found: the metrics are at {PATH}\n".encode())
        return
    if method not in ("GET", "HEAD"):
        await _respond(writer, 405, b"method not allowed\n", extra=(("Allow", "GET, HEAD"),))
        return
    body, content_type = await metrics.exposition(headers.get("accept", ""))
    await _respond(writer, 200, body, content_type=content_type, head=method == "HEAD")


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error"}  # fmt: skip


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    head: bool = False,
    extra: tuple[tuple[str, str], ...] = (),
) -> None:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head:
        writer.write(body)
    await writer.drain()
