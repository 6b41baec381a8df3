"""Prometheus metrics: one `Metrics` per app, on a registry of its own (never the global one).

The composition root (`app.open_app`) builds it and hands it to the parts that record, as it
hands them their other collaborators: the API's interceptor (calls), the services (executions,
the queue's wait, the event log, the validation cache, the server's run cap), the caches, the
limiter, the engine (node attempts, through the compiler's `NodeMetrics` port) and the source
adapters (LLM calls, through the sources' `ChatMetrics` port). The layers below only see those
ports; only this package imports `prometheus_client` (an import-linter contract).

Every name and label is fixed and documented in docs/observability.md, for dashboards. Labels
stay bounded: RPC methods the server serves, status codes, node types, the models the sources
configure; never an execution, a tenant or a request. The recording calls are cheap: children
with fixed labels are bound once (at construction, or the first time a label value is seen,
then kept in a dict), so a call is a dict lookup and prometheus-client's own increment.

Two families are read when scraped rather than kept up to date: the database pool's use (a
function the app registers, `watch_database_pool`) and the job queue's depth (an async read of
Redis, `watch_queue`, done by `exposition()` before it renders; a read that fails leaves the
family out of that scrape rather than show a stale value).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metric_children import CacheMetrics, ChatCallMetrics, RpcMetrics
from agentflow_grpc.observability.metric_names import (
    APPEND_BUCKETS,
    CACHE_REQUESTS,
    CACHES,
    CHAT,
    EVENT_LOG_APPEND,
    EVENT_LOG_EVENTS,
    EXECUTION_DURATION,
    EXECUTION_STATUSES,
    EXECUTIONS,
    EXECUTIONS_RUNNING,
    GEN_AI_DURATION,
    GEN_AI_FIRST_CHUNK,
    GEN_AI_SECONDS,
    GEN_AI_TOKEN_USAGE,
    GEN_AI_TOKENS,
    LIMIT_REFUSALS,
    LIMIT_SCOPES,
    NODE_BUCKETS,
    NODE_DURATION,
    NODE_STATUSES,
    QUEUE_BUCKETS,
    QUEUE_WAIT,
    RPC_BUCKETS,
    RPC_DURATION,
    RPC_REQUESTS,
    RUN_BUCKETS,
    WEBHOOK_ATTEMPT_DURATION,
    WEBHOOK_ATTEMPT_RESULTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_OUTCOMES,
)
from agentflow_grpc.observability.scrape_collectors import (
    PoolCollector,
    PoolUse,
    QueueCollector,
    QueueDepth,
)

log = get_logger("agentflow.metrics")

QUEUE_READ_TIMEOUT = 1.0  # seconds a scrape waits for the queue's depth


class Metrics:
    """Every metric of one server process (one app), on `registry`; see the module doc."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, memory, open fds
        PlatformCollector(registry=registry)  # python_info
        GCCollector(registry=registry)
        self._refreshes: list[Callable[[], Awaitable[None]]] = []

        self._rpc_requests = Counter(
            RPC_REQUESTS,
            "gRPC calls the server answered, by full method name and status code.",
            ["method", "code"],
            registry=registry,
        )
        self._rpc_duration = Histogram(
            RPC_DURATION,
            "Seconds from a call's arrival to its status (a stream: to its last message).",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self._rpcs: dict[str, RpcMetrics] = {}

        executions = Counter(
            EXECUTIONS,
            "Executions this server ended, by final status (run here, or ended without a run).",
            ["status"],
            registry=registry,
        )
        duration = Histogram(
            EXECUTION_DURATION,
            "Seconds an execution run here took, from its start to its final event stored.",
            ["status"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self._ended = {status: executions.labels(status) for status in EXECUTION_STATUSES}
        self._ran = {status: duration.labels(status) for status in EXECUTION_STATUSES}
        self._running = Gauge(
            EXECUTIONS_RUNNING,
            "Executions this server is running now (streamed or from the queue).",
            registry=registry,
        )
        self._queue_wait = Histogram(
            QUEUE_WAIT,
            "Seconds a background execution waited, from being queued to a worker starting it.",
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        node_duration = Histogram(
            NODE_DURATION,
            "Seconds each node attempt took, by node type and how the attempt ended.",
            ["node_type", "status"],
            buckets=NODE_BUCKETS,
            registry=registry,
        )
        self._node_duration = node_duration
        self._nodes: dict[str, dict[str, Histogram]] = {status: {} for status in NODE_STATUSES}
        self._event_log_append = Histogram(
            EVENT_LOG_APPEND,
            "Seconds one append of a run's events to the event log took (a batch, retries in).",
            buckets=APPEND_BUCKETS,
            registry=registry,
        )
        self._event_log_events = Counter(
            EVENT_LOG_EVENTS,
            "Execution events stored in the event log by this server.",
            registry=registry,
        )
        deliveries = Counter(
            WEBHOOK_DELIVERIES,
            "Completion webhook deliveries ended by this server, by outcome (delivered, failed: "
            "given up).",
            ["outcome"],
            registry=registry,
        )
        self._webhook_deliveries = {o: deliveries.labels(o) for o in WEBHOOK_OUTCOMES}
        attempts = Histogram(
            WEBHOOK_ATTEMPT_DURATION,
            "Seconds one attempt to send a completion webhook took, by result (delivered: 2xx; "
            "rejected: another status; unreachable: no answer; refused: address not allowed).",
            ["result"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self._webhook_attempts = {r: attempts.labels(r) for r in WEBHOOK_ATTEMPT_RESULTS}
        refusals = Counter(
            LIMIT_REFUSALS,
            "Calls, runs and provider calls refused (or held back) by a limit, by its scope.",
            ["scope"],
            registry=registry,
        )
        self._refusals = {scope: refusals.labels(scope) for scope in LIMIT_SCOPES}
        self._cache_requests = Counter(
            CACHE_REQUESTS,
            "Cache lookups, by cache and result (hit, miss, error: a failed read).",
            ["cache", "result"],
            registry=registry,
        )
        self._caches = {name: CacheMetrics(self._cache_requests, name) for name in CACHES}

        self._gen_ai_tokens = Histogram(
            GEN_AI_TOKEN_USAGE,
            "Number of input and output tokens used (OpenTelemetry gen_ai.client.token.usage).",
            [
                "gen_ai_operation_name",
                "gen_ai_provider_name",
                "gen_ai_request_model",
                "gen_ai_token_type",
            ],
            buckets=GEN_AI_TOKENS,
            registry=registry,
        )
        self._gen_ai_duration = Histogram(
            GEN_AI_DURATION,
            "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration).",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"],
            buckets=GEN_AI_SECONDS,
            registry=registry,
        )
        self._gen_ai_first_chunk = Histogram(
            GEN_AI_FIRST_CHUNK,
            "Time to receive the first chunk of a streamed response (OpenTelemetry "
            "gen_ai.client.operation.time_to_first_chunk).",
            ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"],
            buckets=GEN_AI_SECONDS,
            registry=registry,
        )
        self._chats: dict[tuple[str, str], ChatCallMetrics] = {}

    # --- recording ---

    def rpc(self, method: str) -> RpcMetrics:
        """The children of one RPC method (bound the first time it is called)."""
        found = self._rpcs.get(method)
        if found is None:
            found = self._rpcs[method] = RpcMetrics(self._rpc_requests, self._rpc_duration, method)
        return found

    def execution_started(self) -> None:
        self._running.inc()

    def execution_stopped(self) -> None:
        """A run started here is no longer running (ended, handed over, or its log failed)."""
        self._running.dec()

    def execution_ran(self, status: str, seconds: float) -> None:
        """A run here ended with `status` (`completed`, `failed`, `cancelled`) after `seconds`."""
        self._ended[status].inc()
        self._ran[status].observe(seconds)

    def execution_ended_unrun(self, status: str) -> None:
        """An execution was ended without running here (cancelled while queued, lost too often,
        refused when taken up)."""
        self._ended[status].inc()

    def queue_waited(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)

    def node_attempt(self, node_type: str, status: str, seconds: float) -> None:
        """One node attempt ended (`completed`, `failed`, `timed_out`, `cancelled`); the
        compiler's `NodeMetrics` port."""
        by_type = self._nodes[status]
        child = by_type.get(node_type)
        if child is None:
            child = by_type[node_type] = self._node_duration.labels(node_type, status)
        child.observe(seconds)

    def event_log_appended(self, events: int, seconds: float) -> None:
        self._event_log_append.observe(seconds)
        self._event_log_events.inc(events)

    def webhook_attempted(self, result: str, seconds: float) -> None:
        """One attempt to send a webhook; `result` one of WEBHOOK_ATTEMPT_RESULTS."""
        self._webhook_attempts[result].observe(seconds)

    def webhook_ended(self, outcome: str) -> None:
        """A webhook delivery was delivered or given up (WEBHOOK_OUTCOMES)."""
        self._webhook_deliveries[outcome].inc()

    def limit_refused(self, scope: str) -> None:
        """A limit of `scope` (one of LIMIT_SCOPES) refused a call, a run or a provider call."""
        self._refusals[scope].inc()

    def cache(self, name: str) -> CacheMetrics:
        """The lookups of cache `name` (one of CACHES)."""
        return self._caches[name]

    def chat_calls(self, provider: str, model: str) -> ChatCallMetrics:
        """The chat calls of one provider (`gen_ai_provider_name`) and model, bound once; the
        sources' `ChatMetrics` port."""
        key = (provider, model)
        found = self._chats.get(key)
        if found is None:
            found = self._chats[key] = ChatCallMetrics(
                self._gen_ai_tokens,
                self._gen_ai_duration,
                self._gen_ai_first_chunk,
                (CHAT, provider, model),
            )
        return found

    # --- read when scraped ---

    def watch_database_pool(self, use: Callable[[], PoolUse]) -> None:
        """Report the database pool's use, `use()` read at each scrape."""
        self.registry.register(PoolCollector(use))

    def watch_queue(self, depth: Callable[[], Awaitable[QueueDepth]]) -> None:
        """Report the job queue's depth, `await depth()` read before each scrape (bounded by
        QUEUE_READ_TIMEOUT; a failed read leaves the family out of that scrape)."""
        collector = QueueCollector()
        self.registry.register(collector)

        async def refresh() -> None:
            try:
                async with asyncio.timeout(QUEUE_READ_TIMEOUT):
                    collector.depth = await depth()
            except Exception as exc:
                collector.depth = None
                log.debug("metrics.queue_depth_unavailable", error=str(exc) or type(exc).__name__)

        self._refreshes.append(refresh)

    async def refresh(self) -> None:
        """Read what is read at scrape time (the queue's depth)."""
        for refresh in self._refreshes:
            await refresh()

    async def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the text format `accept` asks for (Prometheus's text format by
        default, OpenMetrics when asked), after `refresh()`; and its content type."""
        await self.refresh()
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type
