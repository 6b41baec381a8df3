"""Rate limits and quotas in Redis, per tenant, per API key and per source (see limiter.py).

keys = RedisKeys(settings.redis_prefix)  # agentflow_grpc.keyspace: every key, one prefix
invalidations = Invalidations(redis_client, keys)  # what every replica must forget at once
limiter = Limiter(redis_client, LimitPolicy.from_settings(settings), keys=keys, metrics=metrics,
                  tenant_limits=tenants.tenant_limits, invalidations=invalidations)
invalidations.start(); ...; await invalidations.close()
await limiter.admit_request(tenant_id, api_key_id)
async with limiter.execution_slot(tenant_id, api_key_id, execution_id): ...
await limiter.check_tokens(tenant_id); await limiter.add_tokens(tenant_id, n)
SourceRegistry.default(metrics=metrics, provider_limiter=limiter.providers)
"""

from agentflow_grpc.limits.invalidations import Invalidation, Invalidations
from agentflow_grpc.limits.limiter import Limiter, TenantLimitsLookup
from agentflow_grpc.limits.policy import LimitPolicy
from agentflow_grpc.limits.quotas import TOKENS_PER_DAY
from agentflow_grpc.limits.requests import KEY_RATE_LIMITED, TENANT_RATE_LIMITED
from agentflow_grpc.limits.slots import KEY_CONCURRENCY, TENANT_CONCURRENCY, ExecutionSlot

__all__ = [
    "KEY_CONCURRENCY",
    "KEY_RATE_LIMITED",
    "TENANT_CONCURRENCY",
    "TENANT_RATE_LIMITED",
    "TOKENS_PER_DAY",
    "ExecutionSlot",
    "Invalidation",
    "Invalidations",
    "LimitPolicy",
    "Limiter",
    "TenantLimitsLookup",
]
