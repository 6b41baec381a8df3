"""The composition root: settings → database (embedded or `DATABASE_URL`), Redis (embedded or
`REDIS_URL`) → keyring → services.

`open_app(settings)` is the one place these are built and torn down, for `agentflow serve`,
the CLI's storage commands and the tests alike.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis.asyncio as redis
from pydantic import SecretStr

from agentflow_grpc.caching.llm_responses import RedisResponseCache
from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.config import Settings
from agentflow_grpc.devstack.postgres import EmbeddedPostgres
from agentflow_grpc.devstack.valkey import EmbeddedValkey
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.identity.oidc import OidcConfig, OidcVerifier
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits import Invalidations, Limiter, LimitPolicy
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.observability.error_reporting import configure_error_reporting
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.observability.tracing import Tracing, TracingConfigError, configure_tracing
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.services.audit import AuditService
from agentflow_grpc.services.authentication import Authenticator
from agentflow_grpc.services.error_groups import ErrorGroupService
from agentflow_grpc.services.executions import ExecutionService
from agentflow_grpc.services.health import HealthService
from agentflow_grpc.services.profiling import ServerProfiler
from agentflow_grpc.services.sources import SourceService
from agentflow_grpc.services.stats import StatsService
from agentflow_grpc.services.tenants import TenantService
from agentflow_grpc.services.webhook_dispatcher import RetryPolicy, WebhookDispatcher
from agentflow_grpc.services.webhooks import WebhookService
from agentflow_grpc.services.workers import WorkerPool
from agentflow_grpc.services.workflows import WorkflowService
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.storage import migrations
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.app")

DEV_KEY_FILE = "secret-keys"


@dataclass(frozen=True, slots=True)
class App:
    settings: Settings
    dsn: str
    embedded: bool  # the database is the embedded server under AGENTFLOW_HOME
    database: Database
    redis: redis.Redis
    redis_embedded: bool  # Redis is the embedded Valkey under AGENTFLOW_HOME
    limiter: Limiter  # rate limits and quotas, in Redis; fail open when it is down
    keyring: Keyring
    tenants: TenantService
    authenticator: Authenticator  # API keys (cached while revocations reach it) and sign-ins
    audit: AuditService  # the audit log: listed, recorded outside a change, verified, exported
    workflows: WorkflowService
    sources: SourceService
    executions: ExecutionService
    workers: WorkerPool  # background runs from the job queue; started by a server
    tracing: Tracing  # the tracer provider the OTEL_* variables ask for (observability/tracing.py)
    metrics: Metrics  # Prometheus metrics, on a registry of this app's own; served by a server
    error_groups: ErrorGroupService  # failures grouped by cause (ObservabilityService)
    health: HealthService  # the dependencies' health (HealthService, the dashboard)
    stats: StatsService  # the dashboard's numbers, from PostgreSQL (ObservabilityService)
    profiler: ServerProfiler  # sampling profiles of this process, for admins
    webhooks: WebhookService  # completion webhook deliveries, as listed (docs/webhooks.md)
    webhook_dispatcher: WebhookDispatcher  # sends them; started and stopped with the workers


class _Embedded(Protocol):
    def start(self) -> str: ...
    def stop(self) -> None: ...


@asynccontextmanager
async def _given_or_embedded(
    given: SecretStr | None, embedded: _Embedded
) -> AsyncIterator[tuple[str, bool]]:
    """The URL given, or that of the embedded server (started here, stopped on exit); and
    whether it is the embedded one."""
    if given is not None:
        yield given.get_secret_value(), False
        return
    url = await asyncio.to_thread(embedded.start)
    try:
        yield url, True
    finally:
        await asyncio.to_thread(embedded.stop)


def database_dsn(settings: Settings) -> AbstractAsyncContextManager[tuple[str, bool]]:
    """`DATABASE_URL`, or the embedded PostgreSQL's DSN; and whether it is the embedded one."""
    return _given_or_embedded(settings.database_url, EmbeddedPostgres(settings.home))


def redis_url(settings: Settings) -> AbstractAsyncContextManager[tuple[str, bool]]:
    """`REDIS_URL`, or the embedded Valkey's URL; and whether it is the embedded one."""
    return _given_or_embedded(settings.redis_url, EmbeddedValkey(settings.home))


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[tuple[redis.Redis, bool]]:
    """A Redis client; it connects on first use, so a Redis that is down does not stop the start
    (health reports it)."""
    async with redis_url(settings) as (url, embedded):
        client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        try:
            yield client, embedded
        finally:
            await client.aclose()


@asynccontextmanager
async def open_app(settings: Settings, *, migrate: bool = False) -> AsyncIterator[App]:
    """Everything wired; `migrate=True` first upgrades the schema to the newest revision."""
    async with (
        open_tracing(settings) as tracing,
        open_error_reporting(settings),
        database_dsn(settings) as (dsn, embedded),
        open_redis(settings) as redis_client,
    ):
        if migrate:
            await migrations.upgrade(dsn)
        keyring = load_keyring(settings, embedded=embedded)
        database = await Database.connect(
            dsn,
            min_size=settings.database_pool_min,
            max_size=settings.database_pool_max,
            acquire_timeout=settings.database_acquire_timeout,
            schema_revision=migrations.head_revision(),
        )
        try:
            metrics = Metrics()  # this app's registry: apps in one process keep apart
            metrics.watch_database_pool(database.pool_use)
            nodes = NodeRegistry.from_entry_points()
            keys = RedisKeys(settings.redis_prefix)  # every Redis key, under one prefix
            # What every replica must forget at once: revoked keys, tenants' changed limits.
            invalidations = Invalidations(redis_client[0], keys)
            tenants = TenantService(database, invalidations=invalidations)
            limiter = Limiter(
                redis_client[0],
                LimitPolicy.from_settings(settings),
                keys=keys,
                metrics=metrics,
                tenant_limits=tenants.tenant_limits,
                invalidations=invalidations,
            )
            audit = AuditService(database)
            oidc = OidcConfig.from_settings(settings)
            verifier = None if oidc is None else OidcVerifier(oidc)
            authenticator = Authenticator(
                database,
                invalidations=invalidations,
                cache_seconds=settings.api_key_cache_seconds,
                verifier=verifier,
                on_sign_in=audit.signed_in,
            )
            source_registry = SourceRegistry.default(
                metrics=metrics,
                provider_limiter=limiter.providers,
                azure_server_identity=settings.azure_server_identity,
            )
            limits = settings.spec_limits()
            engine = ExecutionEngine(
                metrics=metrics,
                registry=nodes,
                cache_size=settings.compiled_cache_size,
                node_timeout=settings.node_timeout,
                execution_timeout=settings.execution_timeout,
                response_cache=RedisResponseCache(redis_client[0], keys=keys, metrics=metrics),
            )
            versions = WorkflowVersionCache(redis_client[0], keys=keys, metrics=metrics)
            replica = coordination(settings, redis_client[0], keys)
            metrics.watch_queue(replica.queue.depth)
            health = HealthService(
                {"database": database.ping, "redis": redis_ping(redis_client[0])}
            )
            executions = ExecutionService(
                database,
                engine,
                keyring,
                sources=source_registry,
                plugins=nodes.catalog,
                limits=limits,
                max_running=settings.max_running_executions,
                coordination=replica,
                limiter=limiter,
                versions=versions,
                metrics=metrics,
            )
            dispatcher = webhook_dispatcher(
                settings, database, keyring, source_registry, metrics, dsn
            )
            app = App(
                settings=settings,
                dsn=dsn,
                embedded=embedded,
                database=database,
                redis=redis_client[0],
                redis_embedded=redis_client[1],
                limiter=limiter,
                keyring=keyring,
                tenants=tenants,
                authenticator=authenticator,
                audit=audit,
                workflows=WorkflowService(
                    database, plugins=nodes.catalog, limits=limits, versions=versions
                ),
                sources=SourceService(database, keyring, source_registry),
                executions=executions,
                workers=WorkerPool(executions, concurrency=settings.workers, webhooks=dispatcher),
                tracing=tracing,
                metrics=metrics,
                error_groups=ErrorGroupService(database),
                health=health,
                stats=StatsService(database, health=health, queue_depth=waiting_jobs(replica)),
                profiler=ServerProfiler(max_message_bytes=settings.max_message_bytes),
                webhooks=WebhookService(database),
                webhook_dispatcher=dispatcher,
            )
            invalidations.start()
            try:
                yield app
            finally:
                await app.workers.stop()
                await app.executions.shutdown(grace=0)  # no-op after a server's drain
                await authenticator.close()
                await invalidations.close()
                if verifier is not None:
                    await verifier.aclose()
        finally:
            await database.close()


@asynccontextmanager
async def open_tracing(settings: Settings) -> AsyncIterator[Tracing]:
    """Traces as the standard OTEL_* variables ask (none exported without an endpoint); on the
    way out the spans still buffered are exported and the provider stops."""
    try:
        tracing = configure_tracing(content=settings.trace_content)
    except TracingConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    try:
        yield tracing
    finally:
        await asyncio.to_thread(tracing.close)


@asynccontextmanager
async def open_error_reporting(settings: Settings) -> AsyncIterator[None]:
    """Internal errors to Sentry when `SENTRY_DSN` is set (observability/error_reporting.py); on
    the way out the events still queued are sent."""
    dsn = settings.sentry_dsn
    reporting = configure_error_reporting(None if dsn is None else dsn.get_secret_value())
    try:
        yield
    finally:
        await asyncio.to_thread(reporting.close)


def redis_ping(client: redis.Redis) -> Callable[[], Awaitable[float]]:
    """A health check of Redis: the round trip of a PING, in milliseconds."""

    async def ping() -> float:
        started = time.perf_counter()
        await client.ping()  # type: ignore[misc]  # typed sync-or-async by redis-py
        return (time.perf_counter() - started) * 1000

    return ping


def waiting_jobs(replica: Coordination) -> Callable[[], Awaitable[int]]:
    """The job queue's background runs waiting for a worker (the dashboard's queue depth)."""

    async def waiting() -> int:
        jobs_waiting, _claimed = await replica.queue.depth()
        return jobs_waiting

    return waiting


def webhook_dispatcher(
    settings: Settings,
    database: Database,
    keyring: Keyring,
    registry: SourceRegistry,
    metrics: Metrics,
    dsn: str,
) -> WebhookDispatcher:
    """The replica's sender of completion webhooks, as the AGENTFLOW_WEBHOOK_* settings say;
    it listens for new deliveries on a connection of its own to `dsn`."""
    return WebhookDispatcher(
        database,
        keyring,
        registry,
        metrics=metrics,
        policy=RetryPolicy(
            retry_delay=settings.webhook_retry_delay,
            max_delay=settings.webhook_max_delay,
            retry_window=settings.webhook_retry_window,
        ),
        poll_interval=settings.webhook_poll_interval,
        concurrency=settings.webhook_concurrency,
        dsn=dsn,
    )


def coordination(settings: Settings, client: redis.Redis, keys: RedisKeys) -> Coordination:
    """The job queue, leases and event fan-out of this replica, on `client`."""
    return Coordination.on(
        client,
        keys,
        replica=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        visibility_timeout=settings.job_visibility_timeout,
        max_deliveries=settings.job_max_deliveries,
    )


def load_keyring(settings: Settings, *, embedded: bool) -> Keyring:
    """`AGENTFLOW_SECRET_KEYS`; for the embedded dev database only, a key kept in
    `AGENTFLOW_HOME/secret-keys` (made on first start, readable by its owner only)."""
    if settings.secret_keys is not None:
        return Keyring.parse(settings.secret_keys.get_secret_value())
    if not embedded:
        raise ConfigurationError(
            "AGENTFLOW_SECRET_KEYS is not set: with DATABASE_URL, source secrets need keys "
            "from the environment (`agentflow generate-key` makes one)"
        )
    return Keyring.parse(_dev_key_text(settings.home / DEV_KEY_FILE))


def _dev_key_text(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    text = f"dev:{Keyring.generate_key()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    log.warning(
        "secret_keys.generated",
        path=str(path),
        hint="set AGENTFLOW_SECRET_KEYS in production; this key only serves the embedded database",
    )
    return text
