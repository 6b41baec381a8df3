"""One chat call of a node, answered from the run's response cache when the node opts in.

`cached_chat` is what the llm node and the `summarize` aggregator call. Without a policy, a
cache or a namespace for the run, it is a plain call. With them:

- a **hit** calls no provider: a streaming node gets the cached text as one `node_token`, and
  the usage spends nothing (`cached_tokens` says what the first call cost); the attempt notes
  the model that made the kept reply (a `cached` ProviderCall: no provider time), so its
  `node_completed` names it and the saved tokens count for that model;
- a **miss** calls the provider (streaming as usual); the node calls `reply.keep()` once it has
  accepted the reply (JSON parsed, schema checked), so a failed or partial answer is never kept.

The cache never fails a node: a failed read is a miss, a failed write is not kept; both are
logged as warnings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from agentflow_grpc.model.events import CacheStatus, ProviderCall, TokenUsage
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.nodes.base import NodeContext
from agentflow_grpc.nodes.response_cache import CachedReply, ScopedResponseCache
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.sources.base import ChatModel, ChatRequest, ChatResult
from agentflow_grpc.spec.base import CachePolicy

log = get_logger("agentflow.cache")


@dataclass(frozen=True, slots=True)
class _Pending:
    cache: ScopedResponseCache
    key: str
    entry: CachedReply
    ttl: float


@dataclass(frozen=True, slots=True)
class ChatReply:
    text: str
    usage: TokenUsage | None
    cache: CacheStatus | None  # None: the cache was not asked
    _pending: _Pending | None = None  # a fresh reply that may be kept

    async def keep(self, context: NodeContext) -> None:
        """Keep a fresh reply in the cache; nothing for a hit or when caching is off."""
        pending = self._pending
        if pending is None:
            return
        try:
            await pending.cache.put(pending.key, pending.entry, pending.ttl)
        except Exception as exc:
            _warn(context, "put", exc)


async def cached_chat(
    context: NodeContext, source: str, request: ChatRequest, policy: CachePolicy | None
) -> ChatReply:
    model = await context.chat_model(source)
    cache = context.response_cache if policy is not None else None
    definition = getattr(model, "definition", None)
    if policy is None or cache is None or not isinstance(definition, SourceDefinition):
        result = await timed_chat(context, model, request)
        return ChatReply(result.text, result.usage, None)
    key: str | None = None
    try:
        key = cache.key(definition, request)
        cached = await cache.get(key)
    except Exception as exc:
        _warn(context, "get", exc)
        cached = None
    if cached is not None:
        if request.stream and cached.text:
            context.emit_token(cached.text)
        usage = (
            None if cached.usage is None else TokenUsage(cached_tokens=cached.usage.total_tokens)
        )
        if cached.model:
            context.record_call(
                ProviderCall(0.0, provider=cached.provider or None, model=cached.model, cached=True)
            )
        return ChatReply(cached.text, usage, "hit")
    result = await timed_chat(context, model, request)
    pending = None if key is None else _Pending(cache, key, CachedReply.of(result), policy.ttl)
    return ChatReply(result.text, result.usage, "miss", pending)


async def timed_chat(context: NodeContext, model: ChatModel, request: ChatRequest) -> ChatResult:
    """`model.chat`, its time and time to first token noted on the attempt (`record_call`),
    whether it answers or fails."""
    started = time.perf_counter()
    first_token: float | None = None

    def on_token(text: str) -> None:
        nonlocal first_token
        if first_token is None:
            first_token = (time.perf_counter() - started) * 1000
        context.emit_token(text)

    try:
        result = await model.chat(request, on_token)
    except BaseException:
        context.record_call(ProviderCall((time.perf_counter() - started) * 1000, first_token))
        raise
    elapsed = (time.perf_counter() - started) * 1000
    context.record_call(
        ProviderCall(elapsed, first_token, provider=result.provider or None, model=result.model)
    )
    return result


def _warn(context: NodeContext, operation: str, exc: Exception) -> None:
    log.warning(
        "llm_cache.unavailable",
        operation=operation,
        node_id=context.node.id,
        execution_id=context.execution_id,
        error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
        effect="answered by the provider" if operation == "get" else "the reply is not kept",
    )
