"""A local receiver of completion webhooks on a free 127.0.0.1 port (aiohttp, in the test's loop).

It records every request (headers, raw body, when) and answers with the statuses scripted in
`answers` (one per request, in order; then `default`), optionally after `delay` seconds. Tests
wait for requests with `wait_for(n)`. Every message carries a fresh secret of its own.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agentflow_grpc.model.sources import SourceDefinition
from support.crm_api import serve


def new_secret(size: int = 32) -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of `size` random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(size)).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it came


@dataclass
class WebhookReceiver:
    url: str = ""
    answers: list[int] = field(default_factory=list)  # statuses for the next requests
    default: int = 200
    delay: float = 0.0  # seconds before answering
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        return app

    async def _hook(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.read()
            async with self._arrived:
                self.received.append(Received(dict(request.headers), body, time.monotonic()))
                self._arrived.notify_all()
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.answers.pop(0) if self.answers else self.default
            return web.Response(status=status, text="ok" if status < 300 else "no")
        finally:
            self.in_flight -= 1

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Until `count` requests have come (AssertionError after `timeout` seconds)."""
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(self.received) >= count), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"{len(self.received)} webhook requests came, not {count}"
                ) from None
        return list(self.received)

    def source(self, secret: str, *, name: str = "hook", **config: Any) -> SourceDefinition:
        """A `webhook` source aimed at this receiver (loopback: private network allowed)."""
        return SourceDefinition(
            name=name,
            type="webhook",
            config={"url": f"{self.url}/hook", "allow_private_network": True, **config},
            secrets={"secret": secret},
        )


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    async with serve(receiver.app()) as url:
        receiver.url = url
        yield receiver
