"""A source's provider calls held to its `config.limits`, through the injected ProviderLimiter.

Before each call `admit()` asks the limiter. Over the limit, the call waits for the limiter's
retry-after (asking again: another run may take the freed call first) as long as the whole wait
stays within `max_wait`; a longer wait fails the attempt at once with `provider.rate_limited`,
retryable, so the node's retry policy decides what happens next. After a call, `spent(usage)`
counts the tokens the provider reported against `tokens_per_minute`.

No limiter (the CLI, tests of the engine alone) or no limits: calls go straight through.
"""

from __future__ import annotations

import asyncio
import time

from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.base import ProviderLimiter, ProviderLimits

RATE_LIMITED = "provider.rate_limited"


class CallGate:
    def __init__(
        self,
        definition: SourceDefinition,
        limits: ProviderLimits | None,
        limiter: ProviderLimiter | None,
    ) -> None:
        self._name = definition.name
        self._key = definition.id or f"name:{definition.name}"
        self._limits = limits if limits is not None and limits.active else None
        self._limiter = limiter if self._limits is not None else None

    async def admit(self) -> None:
        """Return when the call may go; NodeFailure `provider.rate_limited` when that would
        take longer than the source's `max_wait`."""
        if self._limiter is None or self._limits is None:
            return
        deadline = time.monotonic() + self._limits.max_wait
        while True:
            wait = await self._limiter.acquire(self._key, self._limits)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise NodeFailure(
                    RATE_LIMITED,
                    f"source {self._name!r} is at its limit ({self._describe()}); the next "
                    f"call may go in {wait:.1f} s",
                    retryable=True,
                )
            await asyncio.sleep(wait)

    async def spent(self, usage: TokenUsage | None) -> None:
        """Count a finished call's tokens (when the provider reported them)."""
        if self._limiter is None or self._limits is None or usage is None:
            return
        if self._limits.tokens_per_minute > 0 and usage.total_tokens > 0:
            await self._limiter.record_tokens(self._key, self._limits, usage.total_tokens)

    def _describe(self) -> str:
        assert self._limits is not None
        parts = []
        if self._limits.requests_per_minute:
            parts.append(f"{self._limits.requests_per_minute} requests a minute")
        if self._limits.tokens_per_minute:
            parts.append(f"{self._limits.tokens_per_minute} tokens a minute")
        return ", ".join(parts)
