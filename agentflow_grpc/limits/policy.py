"""The limits every tenant and API key get, from the settings (0: unlimited); and a tenant's
own, where it has set them (`for_tenant`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from agentflow_grpc.config import Settings
from agentflow_grpc.model.records import TenantLimits

# TenantLimits field → the LimitPolicy field it overrides.
OVERRIDES = {
    "requests_per_second": "tenant_requests_per_second",
    "request_burst": "tenant_request_burst",
    "key_requests_per_second": "key_requests_per_second",
    "key_request_burst": "key_request_burst",
    "max_concurrent_executions": "tenant_max_concurrent_executions",
    "key_max_concurrent_executions": "key_max_concurrent_executions",
    "tokens_per_day": "tenant_tokens_per_day",
}


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    tenant_requests_per_second: float = 0.0
    tenant_request_burst: int = 1
    key_requests_per_second: float = 0.0
    key_request_burst: int = 1
    tenant_max_concurrent_executions: int = 0
    key_max_concurrent_executions: int = 0
    tenant_tokens_per_day: int = 0
    # Not settings: how long a slot outlives a server that stopped renewing it (crashed), and
    # how long a caller refused a slot is told to wait at most.
    slot_lease: float = 60.0
    slot_retry_after: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitPolicy:
        return cls(
            tenant_requests_per_second=settings.tenant_requests_per_second,
            tenant_request_burst=settings.tenant_request_burst,
            key_requests_per_second=settings.key_requests_per_second,
            key_request_burst=settings.key_request_burst,
            tenant_max_concurrent_executions=settings.tenant_max_concurrent_executions,
            key_max_concurrent_executions=settings.key_max_concurrent_executions,
            tenant_tokens_per_day=settings.tenant_tokens_per_day,
        )

    def for_tenant(self, limits: TenantLimits) -> LimitPolicy:
        """This policy with the tenant's own limits in place of the defaults they override."""
        changes = {
            OVERRIDES[name]: value
            for name, value in dataclasses.asdict(limits).items()
            if value is not None
        }
        return dataclasses.replace(self, **changes) if changes else self

    def tenant_limits(self) -> TenantLimits:
        """This policy's limits as a tenant's (each one set): the limits in force."""
        return TenantLimits(**{name: getattr(self, field) for name, field in OVERRIDES.items()})
