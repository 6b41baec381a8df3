"""The built-in source adapters, listed once."""

from __future__ import annotations

from agentflow_grpc.sources.base import ProviderLimiter
from agentflow_grpc.sources.registry import SourceAdapter


def builtin_adapters(provider_limiter: ProviderLimiter | None = None) -> list[SourceAdapter]:
    """Every built-in adapter; the LLM and image ones count their calls with `provider_limiter`
    (sources' `config.limits`), when one is given."""
    from agentflow_grpc.sources import http_api, openai_compatible, postgres

    return [
        *openai_compatible.adapters(provider_limiter),
        *postgres.ADAPTERS,
        *http_api.ADAPTERS,
    ]
