"""Requests per second, with a burst, per tenant and per API key: one bucket each.

A request is admitted when both its tenant's and its key's buckets hold a token, and then takes
one from each; a refused request takes nothing (a key that is refused does not use up its
tenant's rate). The refusal names the bucket that keeps it waiting longest.
"""

from __future__ import annotations

from agentflow_grpc.keyspace import Id, RedisKeys
from agentflow_grpc.limits.buckets import Bucket, take
from agentflow_grpc.limits.guard import FailOpen
from agentflow_grpc.limits.policy import LimitPolicy
from agentflow_grpc.limits.scripts import Scripts
from agentflow_grpc.model.errors import ResourceExhaustedError

TENANT_RATE_LIMITED = "rate_limited.tenant"
KEY_RATE_LIMITED = "rate_limited.api_key"


class RequestLimits:
    def __init__(self, scripts: Scripts, guard: FailOpen, keys: RedisKeys) -> None:
        self._scripts = scripts
        self._guard = guard
        self._keys = keys

    async def admit(self, tenant_id: Id, api_key_id: Id | None, policy: LimitPolicy) -> None:
        """Count one request under the tenant's `policy`; ResourceExhaustedError
        (`rate_limited.tenant` or `rate_limited.api_key`, with the seconds until it would be
        admitted) when over."""
        buckets: list[Bucket] = []
        reasons: list[tuple[str, str]] = []
        if policy.tenant_requests_per_second > 0:
            buckets.append(
                Bucket(
                    self._keys.tenant_requests(tenant_id),
                    policy.tenant_requests_per_second,
                    policy.tenant_request_burst,
                )
            )
            reasons.append((TENANT_RATE_LIMITED, "the tenant"))
        if policy.key_requests_per_second > 0 and api_key_id is not None:
            buckets.append(
                Bucket(
                    self._keys.key_requests(tenant_id, api_key_id),
                    policy.key_requests_per_second,
                    policy.key_request_burst,
                )
            )
            reasons.append((KEY_RATE_LIMITED, "this API key"))
        decision = await take(self._scripts, self._guard, buckets)
        if decision.allowed or decision.denied_by is None:
            return
        code, whom = reasons[decision.denied_by]
        rate = buckets[decision.denied_by].rate
        raise ResourceExhaustedError(
            f"too many requests for {whom} (at most {rate:g} a second); "
            f"retry in {decision.retry_after:.3g} s",
            retry_after=decision.retry_after,
            code=code,
        )
