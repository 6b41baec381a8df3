"""Compile once per spec version: compiled workflows cached by the hash of the spec."""

from __future__ import annotations

from cachetools import LRUCache

from agentflow_grpc.compiler.builder import CompiledWorkflow, compile_workflow
from agentflow_grpc.spec import WorkflowSpec


class CompiledWorkflowCache:
    def __init__(self, maxsize: int = 256) -> None:
        self._cache: LRUCache[str, CompiledWorkflow] = LRUCache(maxsize=maxsize)
        self.hits = 0
        self.misses = 0

    def get(self, spec: WorkflowSpec) -> CompiledWorkflow:
        key = spec.content_hash
        compiled = self._cache.get(key)
        if compiled is not None:
            self.hits += 1
            return compiled
        self.misses += 1
        compiled = self._cache[key] = compile_workflow(spec)
        return compiled

    def __len__(self) -> int:
        return len(self._cache)
