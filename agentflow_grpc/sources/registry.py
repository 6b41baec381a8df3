"""Source adapters by type name, and the set of sources one execution may use.

Built-in adapters are listed once, in `builtin_adapters()`; packages add more under the
entry-point group `agentflow.sources` (an object with `type_name` and `open(definition)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from importlib.metadata import entry_points

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources import http_api, mysql, openai_adapters, postgres, webhook
from agentflow_grpc.sources.anthropic_messages import AnthropicAdapter
from agentflow_grpc.sources.base import (
    UNRECORDED,
    ChatMetrics,
    ProviderLimiter,
    Source,
    SourceAdapter,
)
from agentflow_grpc.sources.gemini import GeminiAdapter

ENTRY_POINT_GROUP = "agentflow.sources"


def builtin_adapters(
    metrics: ChatMetrics,
    provider_limiter: ProviderLimiter | None = None,
    *,
    azure_server_identity: bool = False,
) -> list[SourceAdapter]:
    """Every built-in adapter; the LLM ones record their chat calls in `metrics`, and the LLM
    and image ones count their calls with `provider_limiter` (sources' `config.limits`), when
    one is given. `azure_server_identity`: `azure_openai` sources with Entra ID and no client
    secret may sign in as the identity the server runs as (AGENTFLOW_AZURE_SERVER_IDENTITY)."""
    return [
        *openai_adapters.adapters(metrics, provider_limiter, server_identity=azure_server_identity),
        AnthropicAdapter(metrics, provider_limiter),
        GeminiAdapter(metrics, provider_limiter),
        *postgres.ADAPTERS,
        *mysql.ADAPTERS,
        *http_api.ADAPTERS,
        *webhook.ADAPTERS,
    ]


class SourceRegistry:
    def __init__(self, adapters: Iterable[SourceAdapter] = ()) -> None:
        self._adapters: dict[str, SourceAdapter] = {}
        for adapter in adapters:
            self.register(adapter)

    @classmethod
    def default(
        cls,
        *,
        metrics: ChatMetrics,
        provider_limiter: ProviderLimiter | None = None,
        azure_server_identity: bool = False,
    ) -> SourceRegistry:
        """The built-in adapters plus those installed packages register. The built-in LLM
        sources record their calls in `metrics` (the server's Prometheus metrics; `UNRECORDED`:
        nowhere). `provider_limiter` holds the built-in LLM and image sources to their
        `config.limits` (the server passes the Redis one; without it limits are not enforced).
        `azure_server_identity`: see `builtin_adapters`."""
        registry = cls(
            builtin_adapters(metrics, provider_limiter, azure_server_identity=azure_server_identity)
        )
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            registry.register(entry_point.load())
        return registry

    def register(self, adapter: object) -> None:
        if not isinstance(adapter, SourceAdapter):
            raise SourceConfigError(f"{adapter!r} is not a source adapter (type_name, open)")
        if adapter.type_name in self._adapters:
            raise SourceConfigError(f"source type {adapter.type_name!r} is registered twice")
        self._adapters[adapter.type_name] = adapter

    def types(self) -> list[str]:
        return sorted(self._adapters)

    def open(self, definition: SourceDefinition) -> Source:
        adapter = self._adapters.get(definition.type)
        if adapter is None:
            known = ", ".join(self.types())
            raise SourceConfigError(
                f"source {definition.name!r} has type {definition.type!r}, which no adapter "
                f"runs (known: {known})"
            )
        return adapter.open(definition)


class SourceSet:
    """The sources of one tenant (or one CLI run), found by id or name, opened on first use.

    Opened sources (clients, connection pools) are shared by every execution using this set and
    released by `aclose()`. Without a `registry`, the default one, recording no metrics.
    """

    def __init__(
        self, definitions: Iterable[SourceDefinition], registry: SourceRegistry | None = None
    ) -> None:
        self._registry = registry or SourceRegistry.default(metrics=UNRECORDED)
        self._definitions: dict[str, SourceDefinition] = {}
        for definition in definitions:
            if definition.name in self._definitions:
                raise SourceConfigError(f"source {definition.name!r} is defined twice")
            self._definitions[definition.name] = definition
            if definition.id is not None:
                self._definitions[definition.id] = definition
        self._open: dict[str, Source] = {}
        self._lock = asyncio.Lock()

    def types_by_name(self) -> dict[str, str]:
        """Name (and id) → type, as the validator takes them."""
        return {key: definition.type for key, definition in self._definitions.items()}

    def definition(self, reference: str) -> SourceDefinition | None:
        """The definition named (or with the id) `reference`; None when there is none."""
        return self._definitions.get(reference)

    def check(self) -> None:
        """Open every source now (no I/O happens before first use), so bad configs fail early."""
        for definition in {d.name: d for d in self._definitions.values()}.values():
            if definition.name not in self._open:
                self._open[definition.name] = self._registry.open(definition)

    async def get(self, reference: str) -> Source:
        definition = self._definitions.get(reference)
        if definition is None:
            raise NodeFailure("source.unknown", f"no source named {reference!r}")
        source = self._open.get(definition.name)
        if source is not None:
            return source
        async with self._lock:
            source = self._open.get(definition.name)
            if source is None:
                try:
                    source = self._registry.open(definition)
                except SourceConfigError as exc:
                    raise NodeFailure(exc.code, exc.message) from exc
                self._open[definition.name] = source
        return source

    async def aclose(self) -> None:
        opened, self._open = list(self._open.values()), {}
        results = await asyncio.gather(
            *(source.aclose() for source in opened), return_exceptions=True
        )
        del results  # a source that fails to close must not stop the others from closing
