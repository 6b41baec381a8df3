"""The limits every tenant and API key get, from the settings (0: unlimited)."""

from __future__ import annotations

from dataclasses import dataclass

from agentflow_grpc.config import Settings


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
