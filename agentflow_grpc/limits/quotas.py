"""Tokens per day per tenant: one counter per tenant and UTC day, kept two days.

`check` refuses once the day's count has reached the quota; `add` counts what a call used, as
the provider reported it. A run admitted under the quota is not stopped by it: the quota is
checked where runs (or calls) begin, and the tokens are counted after they are spent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agentflow_grpc.keyspace import Id, RedisKeys
from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.scripts import Scripts
from agentflow_grpc.model.errors import ResourceExhaustedError

TOKENS_PER_DAY = "quota_exceeded.tokens_per_day"
_KEPT = 2 * 86_400  # seconds a day's counter outlives its first write


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TokenQuota:
    def __init__(
        self,
        scripts: Scripts,
        guard: FailOpen,
        keys: RedisKeys,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._scripts = scripts
        self._keys = keys
        self._guard = guard
        self._clock = clock

    async def used(self, tenant_id: Id) -> int | None:
        """Tokens the tenant used today (UTC); None when Redis cannot say."""
        return await self._guard.call("tokens_used", lambda: self._count(tenant_id, self._clock()))

    async def _count(self, tenant_id: Id, now: datetime) -> int:
        return int(
            await self._scripts.client.get(self._keys.tenant_tokens(tenant_id, now.date())) or 0
        )

    async def check(self, tenant_id: Id, tokens_per_day: int) -> None:
        """ResourceExhaustedError (`quota_exceeded.tokens_per_day`, retry after the next UTC
        midnight) when the tenant has used its `tokens_per_day` (0: unlimited) for today."""
        if tokens_per_day <= 0:
            return
        now = self._clock()
        used = await self._guard.call("check_tokens", lambda: self._count(tenant_id, now))
        if used is None or used < tokens_per_day:
            return
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        raise ResourceExhaustedError(
            f"the tenant has used its {tokens_per_day:,} tokens for today (UTC); the "
            "quota is renewed at midnight UTC",
            retry_after=max(1.0, (midnight - now).total_seconds()),
            code=TOKENS_PER_DAY,
        )

    async def add(self, tenant_id: Id, tokens: int, tokens_per_day: int) -> int | None:
        """Count `tokens` more for today; the day's total (None: not counted, the tenant having
        no quota (`tokens_per_day` 0), or Redis could not count)."""
        if tokens <= 0 or tokens_per_day <= 0:
            return None
        key = self._keys.tenant_tokens(tenant_id, self._clock().date())
        reply = await self._guard.call(
            "add_tokens", lambda: self._scripts.add_tokens(keys=[key], args=[tokens, _KEPT])
        )
        return None if reply is None else int(reply)
