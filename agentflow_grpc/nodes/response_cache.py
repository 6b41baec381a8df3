"""The LLM response cache as nodes see it: the `ResponseCache` port, its entries and its keys.

A node whose spec opts in (`cache: {ttl: …}`) asks the run's cache before it calls a chat model,
and stores the reply after a successful call. The server injects an implementation
(`agentflow_grpc.caching.llm_responses`, on Redis) into the engine; each run binds it to one
namespace, the tenant's, so that one tenant's replies are never served to another. Without a
cache, or without a namespace, nothing is cached.

A key is the SHA-256 of a canonical JSON of everything that decides the answer: the namespace,
the source's type and public configuration (base URL, deployment, API version, default model,
headers; never its secrets), the effective model, every parameter of the request (temperature,
top_p, max_tokens, response format, output schema, and any parameter added to `ChatRequest`
later: all its fields count but `stream`) and the rendered messages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.base import ChatRequest, ChatResult

KEY_FORMAT = 1
"""Changes whenever what goes into a key changes, so that old entries are never read."""

_NOT_IN_KEY = frozenset({"stream"})  # request fields that do not change the answer
_CONFIG_NOT_IN_KEY = frozenset({"timeout", "limits"})  # nor do these source settings


@dataclass(frozen=True, slots=True)
class CachedReply:
    """A chat model's complete reply, as it is kept: the text, and what the call cost; the
    model that made it and its provider (gen_ai.provider.name; empty in entries kept before
    it was)."""

    text: str
    model: str
    finish_reason: str | None
    usage: TokenUsage | None
    provider: str = ""

    @classmethod
    def of(cls, result: ChatResult) -> CachedReply:
        return cls(result.text, result.model, result.finish_reason, result.usage, result.provider)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "model": self.model,
            "provider": self.provider,
            "finish_reason": self.finish_reason,
            "usage": None if self.usage is None else self.usage.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> CachedReply:
        """The entry `to_dict` made; ValueError for anything else (a corrupt entry)."""
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise ValueError("a cached reply is an object with a string `text`")
        usage = data.get("usage")
        finish_reason = data.get("finish_reason")
        return cls(
            text=data["text"],
            model=str(data.get("model") or ""),
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            usage=TokenUsage.from_dict(usage) if isinstance(usage, dict) else None,
            provider=str(data.get("provider") or ""),
        )


class ResponseCache(Protocol):
    """Where replies are kept. Implementations may raise on any failure: callers treat a
    failed `get` as a miss and a failed `put` as not kept, and carry on."""

    async def get(self, namespace: str, key: str) -> CachedReply | None:
        """The reply kept under `key` in `namespace`, or None."""

    async def put(self, namespace: str, key: str, reply: CachedReply, ttl: float) -> None:
        """Keep `reply` under `key` in `namespace` for `ttl` seconds."""


@dataclass(frozen=True, slots=True)
class ScopedResponseCache:
    """A cache bound to one namespace (a tenant): what the nodes of one run get."""

    cache: ResponseCache
    namespace: str

    def key(self, source: SourceDefinition, request: ChatRequest) -> str:
        return request_key(self.namespace, source, request)

    async def get(self, key: str) -> CachedReply | None:
        return await self.cache.get(self.namespace, key)

    async def put(self, key: str, reply: CachedReply, ttl: float) -> None:
        await self.cache.put(self.namespace, key, reply, ttl)


def request_key(namespace: str, source: SourceDefinition, request: ChatRequest) -> str:
    """The hex SHA-256 that identifies `request` to `source`, in `namespace`."""
    config = {k: v for k, v in source.config.items() if k not in _CONFIG_NOT_IN_KEY}
    parameters = {
        name: value
        for name, value in dataclasses.asdict(request).items()
        if name not in _NOT_IN_KEY
    }
    # A node naming no model gets the source's: the same request as naming that model.
    parameters["model"] = request.model or config.get("model")
    document = {
        "format": KEY_FORMAT,
        "namespace": namespace,
        "source": {"type": source.type, "config": config},
        "request": parameters,
    }
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
