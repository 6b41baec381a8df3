"""A small Sentry ingest endpoint on 127.0.0.1: what Sentry would get from AgentFlow.

`SentryReceiver` (an async context manager) serves `POST /api/<project>/envelope/` with aiohttp
on a free port, on the test's event loop; `dsn` is the DSN that points sentry-sdk at it. It
keeps every request's body, unpacked (gzip), as bytes (`bodies`, to look for what must never
be sent) and the events of the envelopes parsed (`events`). sentry-sdk sends from a thread of
its own, so a test awaits `wait_for_event()` while the loop serves.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

Event = dict[str, Any]


class SentryReceiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.events: list[Event] = []
        self.projects: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.port}/1"

    async def __aenter__(self) -> SentryReceiver:
        app = web.Application()
        app.router.add_post("/api/{project}/envelope/", self._envelope)
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_event(
        self, matches: Callable[[Event], bool] = lambda event: True, *, timeout: float = 10.0
    ) -> Event:
        """The first event received that `matches`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if matches(event):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no such Sentry event within {timeout} s: {self.events}")
            await asyncio.sleep(0.05)

    async def _envelope(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.bodies.append(body)
        self.projects.append(request.match_info["project"])
        self.events += [item for kind, item in _items(body) if kind == "event"]
        return web.json_response({"id": uuid.uuid4().hex})


def _items(body: bytes) -> list[tuple[str, Any]]:
    """(type, payload) of each item of an envelope: a header line, then per item a header line
    and its payload (of `length` bytes when the header says, else up to the next newline)."""
    _, _, rest = body.partition(b"\n")
    found: list[tuple[str, Any]] = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :].lstrip(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        try:
            found.append((header.get("type", ""), json.loads(payload)))
        except ValueError:
            found.append((header.get("type", ""), payload))
    return found
