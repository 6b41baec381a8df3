"""The built-in source adapters, listed once."""

from __future__ import annotations

from agentflow_grpc.sources.registry import SourceAdapter


def builtin_adapters() -> list[SourceAdapter]:
    from agentflow_grpc.sources import http_api, openai_compatible, postgres

    return [*openai_compatible.ADAPTERS, *postgres.ADAPTERS, *http_api.ADAPTERS]
