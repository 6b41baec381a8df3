"""The cancel listener on a real Valkey: a quiet channel is not a lost connection.

The server's Redis client reads with a socket timeout; the listener must not take a channel
with nothing on it for longer than that as Redis going away (it used to log
`queue.cancel_listener_lost` every few seconds on an idle server, and reconnect).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from structlog.testing import capture_logs

from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.queue.runs import LISTEN_WAIT, RunLeases

SOCKET_TIMEOUT = 0.3  # far below the quiet spell the test waits through


@pytest.fixture
async def leases(redis_url: str) -> AsyncIterator[RunLeases]:
    client = redis.Redis.from_url(redis_url, socket_timeout=SOCKET_TIMEOUT)
    try:
        yield RunLeases(client, RedisKeys(f"test-{uuid.uuid4().hex[:8]}"), replica="r", ttl=5)
    finally:
        await client.aclose()


async def test_a_quiet_channel_keeps_its_listener_and_a_late_cancel_arrives(
    leases: RunLeases,
) -> None:
    received: list[tuple[uuid.UUID, str]] = []
    watched: list[uuid.UUID] = []
    arrived = asyncio.Event()

    async def on_cancel(execution_id: uuid.UUID, reason: str) -> None:
        received.append((execution_id, reason))
        arrived.set()

    with capture_logs() as logs:
        listener = asyncio.create_task(leases.listen(on_cancel, watched.append))
        try:
            # Quiet for many socket timeouts and more than one of the listener's own waits.
            await asyncio.sleep(max(8 * SOCKET_TIMEOUT, 2 * LISTEN_WAIT + 0.5))
            execution_id = uuid.uuid4()
            await leases.request_watch(execution_id)
            await leases.request_cancel(execution_id, "stop it")
            await asyncio.wait_for(arrived.wait(), timeout=5)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    assert received == [(execution_id, "stop it")]
    assert watched == [execution_id]  # published before the cancel: it came first
    assert [entry for entry in logs if entry["log_level"] in ("warning", "error")] == []
