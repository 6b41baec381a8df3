"""Sources' own limits on provider calls (`config.limits`), with the Redis ProviderLimiter and the
fake OpenAI-compatible provider: requests and tokens a minute shared by every user of the
source, short waits waited out, long ones failing with `provider.rate_limited` (retryable)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from support.limits import new_id, replicas
from support.provider import chat_requests

from agentflow_grpc.limits import LimitPolicy
from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.base import ChatRequest, ProviderLimiter, ProviderLimits
from agentflow_grpc.sources.openai_adapters import adapters
from agentflow_grpc.sources.openai_compatible import OpenAICompatibleSource
from agentflow_grpc.testing import FakeProviderServer

ASK = ChatRequest(messages=[{"role": "user", "content": "one two three"}], stream=False)


def definition(
    provider: FakeProviderServer, limits: dict[str, Any], **fields: Any
) -> SourceDefinition:
    return SourceDefinition(
        id=str(new_id()),
        name="limited",
        type="openai",
        config={"base_url": f"{provider.url}/v1", "model": "fake-model", "limits": limits},
        secrets={"api_key": "sk-test"},
        **fields,
    )


def opened(source: SourceDefinition, limiter: ProviderLimiter | None) -> OpenAICompatibleSource:
    (openai_adapter,) = [
        adapter for adapter in adapters(Metrics(), limiter) if adapter.type_name == "openai"
    ]
    return openai_adapter.open(source)


async def test_requests_per_minute_hold_for_every_user_of_the_source(
    redis_url: str, provider: FakeProviderServer
) -> None:
    source = definition(provider, {"requests_per_minute": 2, "max_wait": 1})
    async with replicas(redis_url, LimitPolicy(), count=2) as (first, second):
        # Two replicas, each with the source opened for its own runs.
        here, there = opened(source, first.providers), opened(source, second.providers)
        try:
            await here.chat(ASK, lambda _: None)
            await there.chat(ASK, lambda _: None)
            with pytest.raises(NodeFailure) as refused:
                await here.chat(ASK, lambda _: None)
            assert refused.value.code == "provider.rate_limited"
            assert refused.value.retryable
            assert "2 requests a minute" in refused.value.message
            assert chat_requests(provider) == 2
        finally:
            await here.aclose()
            await there.aclose()


async def test_a_short_wait_is_waited_out(redis_url: str, provider: FakeProviderServer) -> None:
    # 60 a minute: after a burst of 60, one call a second.
    source = definition(provider, {"requests_per_minute": 60, "max_wait": 5})
    async with replicas(redis_url, LimitPolicy(), count=1) as (limiter,):
        limits = ProviderLimits(requests_per_minute=60)
        assert source.id is not None
        waits = await asyncio.gather(
            *(limiter.providers.acquire(source.id, limits) for _ in range(60))
        )
        assert waits == [0.0] * 60
        wait = await limiter.providers.acquire(source.id, limits)
        assert 0.5 < wait <= 1.0
        chat = opened(source, limiter.providers)
        try:
            started = time.monotonic()
            reply = await chat.chat(ASK, lambda _: None)
            assert time.monotonic() - started >= 0.5
            assert reply.text.startswith("Echo:")
            assert chat_requests(provider) == 1
        finally:
            await chat.aclose()


async def test_reported_tokens_count_against_tokens_per_minute(
    redis_url: str, provider: FakeProviderServer
) -> None:
    # The fake counts words: the prompt's 30 and the reply's "Echo: …" 31, well over 60 a minute
    # (one a second) together; the next call must wait until that debt is paid back.
    words = " ".join(["word"] * 30)
    ask = ChatRequest(messages=[{"role": "user", "content": words}], stream=True)
    source = definition(provider, {"tokens_per_minute": 60, "max_wait": 0})
    async with replicas(redis_url, LimitPolicy(), count=1) as (limiter,):
        chat = opened(source, limiter.providers)
        try:
            reply = await chat.chat(ask, lambda _: None)
            assert reply.usage is not None
            assert reply.usage.total_tokens == 61
            with pytest.raises(NodeFailure) as refused:
                await chat.chat(ask, lambda _: None)
            assert refused.value.code == "provider.rate_limited"
            assert chat_requests(provider) == 1
            assert source.id is not None
            wait = await limiter.providers.acquire(source.id, ProviderLimits(tokens_per_minute=60))
            # 60 - 61 = -1 left; one token is needed: two tokens' time at one a second.
            assert 1.5 < wait <= 2.0
        finally:
            await chat.aclose()


async def test_no_limiter_or_no_limits_means_calls_go_straight_through(
    redis_url: str, provider: FakeProviderServer
) -> None:
    unlimited = opened(definition(provider, {"requests_per_minute": 1}), None)
    async with replicas(redis_url, LimitPolicy(), count=1) as (limiter,):
        no_limits = opened(definition(provider, {}), limiter.providers)
        try:
            for _ in range(3):
                await unlimited.chat(ASK, lambda _: None)
                await no_limits.chat(ASK, lambda _: None)
            assert chat_requests(provider) == 6
        finally:
            await unlimited.aclose()
            await no_limits.aclose()


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"requests_per_minute": -1}, "config.limits.requests_per_minute"),
        ({"rpm": 3}, "config.limits.rpm"),
        ({"max_wait": "soon"}, "config.limits.max_wait"),
        ("lots", "config.limits"),
    ],
)
def test_bad_limits_are_refused_when_the_source_is_opened(
    provider: FakeProviderServer, limits: Any, problem: str
) -> None:
    with pytest.raises(SourceConfigError, match=problem):
        opened(definition(provider, limits), None)
