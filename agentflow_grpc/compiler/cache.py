"""Compile once per spec version: compiled workflows cached by the hash of the spec."""

from __future__ import annotations

from cachetools import LRUCache

from agentflow_grpc.compiler.builder import CompiledWorkflow, compile_workflow
from agentflow_grpc.spec import WorkflowSpec


def spec_hash(spec: WorkflowSpec) -> str:
    """SHA-256 of the spec's canonical JSON: equal specs hash equal, whatever their key order."""
    return spec.content_hash


class CompiledWorkflowCache:
    def __init__(self, maxsize: int = 256) -> None:
        self._cache: LRUCache[str, CompiledWorkflow] = LRUCache(maxsize=maxsize)
        self.hits = 0
        self.misses = 0

    def get(self, spec: WorkflowSpec) -> CompiledWorkflow:
        key = spec_hash(spec)
        compiled = self._cache.get(key)
        if compiled is not None:
            self.hits += 1
            return compiled
        self.misses += 1
        compiled = self._cache[key] = compile_workflow(spec, key)
        return compiled

    def __len__(self) -> int:
        return len(self._cache)
