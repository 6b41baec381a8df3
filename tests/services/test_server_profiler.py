"""ServerProfiler on its own: a profile fits the message the server may send (resampled coarser
when it would not), or is refused with a reason; it says which process it sampled."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import Principal, Role
from agentflow_grpc.services.profiling import ProfileFormat, ServerProfiler

ADMIN = Principal(uuid.uuid4(), Role.ADMIN, uuid.uuid4())
ENVELOPE = 64 * 1024  # what the profiler keeps back for the rest of the message


@pytest.fixture
async def busy_loop() -> AsyncIterator[None]:
    """A task that keeps the event loop busy, so there is something to sample."""

    async def spin() -> None:
        while True:
            started = time.perf_counter()
            while time.perf_counter() - started < 0.001:
                sum(range(50))
            await asyncio.sleep(0.001)

    task = asyncio.create_task(spin())
    yield
    task.cancel()


async def test_a_profile_larger_than_the_server_may_send_is_resampled_until_it_fits(
    busy_loop: None,
) -> None:
    roomy = await ServerProfiler().profile(ADMIN, 0.5, ProfileFormat.SPEEDSCOPE)
    budget = len(roomy.content) // 3
    tight = await ServerProfiler(max_message_bytes=ENVELOPE + budget).profile(
        ADMIN, 0.5, ProfileFormat.SPEEDSCOPE
    )

    assert len(tight.content) <= budget
    assert json.loads(tight.content)["$schema"].startswith("https://www.speedscope.app/")
    assert 0 < tight.sample_count < roomy.sample_count
    assert tight.pid == os.getpid()
    assert tight.seconds >= 0.5


async def test_a_profile_that_cannot_fit_is_refused_naming_the_duration(busy_loop: None) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await ServerProfiler(max_message_bytes=ENVELOPE).profile(ADMIN, 0.2, ProfileFormat.HTML)
    assert refused.value.field == "duration"
    assert "too large" in refused.value.message
