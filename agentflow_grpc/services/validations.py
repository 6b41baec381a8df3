"""Validations of specs against a tenant's sources, remembered.

Most runs run a spec seen before, and `validate_spec`'s answer depends only on the document and
the names and types of the tenant's sources: so a valid spec's validation is kept (LRU, by the
document's hash and those names and types) and not done again. Invalid ones are not kept.
Lookups are counted in `agentflow_cache_requests_total{cache="spec_validations"}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cachetools import LRUCache

from agentflow_grpc.observability.metric_names import SPEC_VALIDATIONS
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.spec import Limits, PluginCatalog, ValidationResult, validate_spec

VALIDATIONS_KEPT = 512  # valid specs whose validation is remembered (by document and sources)


class SpecValidations:
    def __init__(
        self,
        *,
        plugins: PluginCatalog,
        limits: Limits,
        metrics: Metrics,
        size: int = VALIDATIONS_KEPT,
    ) -> None:
        self._plugins = plugins
        self._limits = limits
        self._lookups = metrics.cache(SPEC_VALIDATIONS)
        self._kept: LRUCache[tuple[str, tuple[tuple[str, str], ...]], ValidationResult] = LRUCache(
            maxsize=size
        )

    def validate(self, document: Any, source_types: Mapping[str, str]) -> ValidationResult:
        """`validate_spec(document)` against sources of these names and types."""
        key = (_document_hash(document), tuple(sorted(source_types.items())))
        result = self._kept.get(key)
        if result is not None:
            self._lookups.hit()
        else:
            self._lookups.miss()
            result = validate_spec(
                document, sources=source_types, plugins=self._plugins, limits=self._limits
            )
            if result.ok:
                self._kept[key] = result
        return result


def _document_hash(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
