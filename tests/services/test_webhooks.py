"""Completion webhooks end to end: a run ends, its delivery is stored with its terminal event, a
dispatcher sends it signed to a real local receiver, retries, gives up, and lists every attempt.

Real parts only: the embedded PostgreSQL, the session's Valkey, the fake OpenAI-compatible
provider, and a webhook receiver on a free 127.0.0.1 port (tests/support/webhook_receiver.py).
Retry delays are tiny, through the dispatcher's RetryPolicy.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as redis
from standardwebhooks import Webhook
from support.api_helpers import eventually
from support.runs import answer_spec, collect
from support.webhook_receiver import WebhookReceiver, new_secret, webhook_receiver

from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits import Limiter, LimitPolicy
from agentflow_grpc.model.errors import InvalidArgumentError, NotFoundError
from agentflow_grpc.model.events import EventType
from agentflow_grpc.model.records import Principal, Role, Tenant
from agentflow_grpc.model.webhooks import DeliveryState, WebhookDelivery
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.services.executions import ExecutionService, RunRequest
from agentflow_grpc.services.sources import SourceService
from agentflow_grpc.services.webhook_dispatcher import RetryPolicy, WebhookDispatcher
from agentflow_grpc.services.webhooks import WebhookService
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.spec import Limits, PluginCatalog
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.testing import FakeProviderServer

FAST = RetryPolicy(retry_delay=0.05, max_delay=0.1, retry_window=60)


@dataclass
class Parts:
    database: Database
    keyring: Keyring
    registry: SourceRegistry
    metrics: Metrics
    sources: SourceService
    executions: ExecutionService
    webhooks: WebhookService
    receiver: WebhookReceiver
    editor: Principal
    secret: str
    dispatchers: list[WebhookDispatcher]

    def dispatcher(
        self, policy: RetryPolicy = FAST, *, start: bool = True, **options: Any
    ) -> WebhookDispatcher:
        """A dispatcher polling every 50 ms (stopped after the test)."""
        dispatcher = WebhookDispatcher(
            self.database,
            self.keyring,
            self.registry,
            metrics=self.metrics,
            policy=policy,
            poll_interval=0.05,
            **options,
        )
        self.dispatchers.append(dispatcher)
        if start:
            dispatcher.start()
        return dispatcher

    async def run(self, webhook_source: str | None = "hook", **spec: Any) -> uuid.UUID:
        """Run `answer_spec` (plus `spec`) to its end; the execution's id."""
        run = await self.executions.start(
            self.editor,
            RunRequest(
                spec={**answer_spec(), **spec},
                inputs={"question": "why?"},
                webhook_source=webhook_source,
            ),
        )
        events = await collect(run.events())
        assert events[-1].type is EventType.EXECUTION_COMPLETED
        return run.id

    async def deliveries(self, execution_id: uuid.UUID) -> list[WebhookDelivery]:
        return await self.webhooks.deliveries(self.editor, execution_id)

    async def ended(self, execution_id: uuid.UUID, timeout: float = 10.0) -> WebhookDelivery:
        """The execution's one delivery, once it is delivered or failed."""

        async def done() -> WebhookDelivery | None:
            (delivery,) = await self.deliveries(execution_id)
            return None if delivery.state is DeliveryState.PENDING else delivery

        return await eventually(done, timeout=timeout)


@pytest.fixture
async def parts(
    database: Database,
    keyring: Keyring,
    tenant_a: Tenant,
    provider: FakeProviderServer,
    valkey: redis.Redis,
) -> AsyncIterator[Parts]:
    metrics = Metrics()
    registry = SourceRegistry.default(metrics=metrics)
    keys = RedisKeys(f"test-{uuid.uuid4().hex[:12]}")
    engine = ExecutionEngine(
        metrics=metrics, registry=NodeRegistry(), node_timeout=30, execution_timeout=60
    )
    executions = ExecutionService(
        database,
        engine,
        keyring,
        sources=registry,
        plugins=PluginCatalog(),
        limits=Limits(),
        coordination=Coordination.on(
            valkey, keys, replica="test", visibility_timeout=30, max_deliveries=3
        ),
        limiter=Limiter(valkey, LimitPolicy(), keys=keys, metrics=metrics),
        versions=WorkflowVersionCache(valkey, keys=keys, metrics=metrics),
        metrics=metrics,
    )
    editor = Principal(tenant_id=tenant_a.id, role=Role.EDITOR, api_key_id=uuid.uuid4())
    sources = SourceService(database, keyring, registry)
    await sources.create(
        editor,
        name="openai-main",
        type="openai",
        config={"base_url": f"{provider.url}/v1", "model": "fake-model"},
        secrets={"api_key": "sk-stored"},
    )
    secret = new_secret()
    async with webhook_receiver() as receiver:
        hook = receiver.source(secret)
        await sources.create(
            editor, name=hook.name, type=hook.type, config=hook.config, secrets={"secret": secret}
        )
        found = Parts(
            database,
            keyring,
            registry,
            metrics,
            sources,
            executions,
            WebhookService(database),
            receiver,
            editor,
            secret,
            [],
        )
        try:
            yield found
        finally:
            for dispatcher in found.dispatchers:
                await dispatcher.stop(grace=0)
            await executions.shutdown(grace=0)


async def test_a_run_that_ends_sends_its_summary_signed_as_standard_webhooks(
    parts: Parts,
) -> None:
    parts.dispatcher()
    execution_id = await parts.run()
    (received,) = await parts.receiver.wait_for(1)

    payload = Webhook(parts.secret).verify(received.body, received.headers)
    assert payload["type"] == "execution.completed"
    data = payload["data"]
    assert data["execution"] == f"executions/{execution_id}"
    assert data["status"] == "completed"
    assert data["outputs"] == {"answer": "Echo: Answer: why?"}
    assert data["error"] is None
    assert data["usage"]["total_tokens"] > 0
    assert [node["node_id"] for node in data["trace"]] == ["start", "reply"]
    assert data["trace"][1]["attempts"][0]["status"] == "completed"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["User-Agent"].startswith("AgentFlow-Webhooks/")

    delivery = await parts.ended(execution_id)
    assert delivery.state is DeliveryState.DELIVERED
    assert received.headers["webhook-id"] == str(delivery.id)
    assert delivery.payload == payload
    assert [(a.attempt, a.status_code, a.error) for a in delivery.attempts] == [(1, 200, "")]
    registry = parts.metrics.registry
    assert (
        registry.get_sample_value("agentflow_webhook_deliveries_total", {"outcome": "delivered"})
        == 1
    )
    assert (
        registry.get_sample_value(
            "agentflow_webhook_attempt_duration_seconds_count", {"result": "delivered"}
        )
        == 1
    )


async def test_a_tampered_body_or_another_secret_does_not_verify(parts: Parts) -> None:
    parts.dispatcher()
    await parts.run()
    (received,) = await parts.receiver.wait_for(1)
    with pytest.raises(Exception, match="signature"):
        Webhook(parts.secret).verify(received.body.replace(b"why", b"how"), received.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(received.body, received.headers)


async def test_the_spec_names_the_webhook_and_a_run_request_may_name_another(
    parts: Parts,
) -> None:
    other = parts.receiver.source(new_secret(), name="other-hook")
    await parts.sources.create(
        parts.editor,
        name=other.name,
        type="webhook",
        config={**other.config, "url": other.config["url"]},
        secrets={"secret": other.secrets["secret"].get_secret_value()},
    )
    by_spec = await parts.run(webhook_source=None, webhook={"source": "hook"})
    by_request = await parts.run(webhook_source="other-hook", webhook={"source": "hook"})
    without = await parts.run(webhook_source=None)
    sources = {s.name: s.id for s in (await parts.sources.list(parts.editor)).items}
    assert [d.source_id for d in await parts.deliveries(by_spec)] == [sources["hook"]]
    assert [d.source_id for d in await parts.deliveries(by_request)] == [sources["other-hook"]]
    assert await parts.deliveries(without) == []


async def test_a_run_request_naming_no_webhook_source_is_refused(parts: Parts) -> None:
    for name, code in (("nope", "source.unknown"), ("openai-main", "source.incompatible")):
        with pytest.raises(InvalidArgumentError) as caught:
            await parts.run(webhook_source=name)
        assert (caught.value.field, caught.value.code) == ("webhook_source", code)


async def test_a_failing_receiver_is_retried_and_every_attempt_is_listed(parts: Parts) -> None:
    parts.receiver.answers = [500, 502]
    parts.dispatcher()
    execution_id = await parts.run()
    received = await parts.receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in received}) == 1, "one id on every retry"

    delivery = await parts.ended(execution_id)
    assert delivery.state is DeliveryState.DELIVERED
    assert delivery.attempt_count == 3
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [
        (1, 500),
        (2, 502),
        (3, 200),
    ]
    assert delivery.attempts[0].error == "answered HTTP 500"
    assert delivery.attempts[1].started_at > delivery.attempts[0].started_at


async def test_a_receiver_that_never_accepts_is_given_up_after_the_window(parts: Parts) -> None:
    parts.receiver.default = 503
    parts.dispatcher(RetryPolicy(retry_delay=0.05, max_delay=0.1, retry_window=0.6))
    execution_id = await parts.run()
    delivery = await parts.ended(execution_id)
    assert delivery.state is DeliveryState.FAILED
    assert delivery.attempt_count >= 2
    assert {a.status_code for a in delivery.attempts} == {503}
    assert delivery.last_error == "answered HTTP 503"
    assert (
        parts.metrics.registry.get_sample_value(
            "agentflow_webhook_deliveries_total", {"outcome": "failed"}
        )
        == 1
    )
    count = len(parts.receiver.received)
    await asyncio.sleep(0.3)
    assert len(parts.receiver.received) == count, "a failed delivery is not sent again"


async def test_a_private_address_is_refused_unless_the_source_allows_it(parts: Parts) -> None:
    hook = parts.receiver.source(new_secret(), name="private", allow_private_network=False)
    await parts.sources.create(
        parts.editor,
        name=hook.name,
        type="webhook",
        config=hook.config,
        secrets={"secret": hook.secrets["secret"].get_secret_value()},
    )
    parts.dispatcher()
    execution_id = await parts.run(webhook_source="private")
    delivery = await parts.ended(execution_id)
    assert delivery.state is DeliveryState.FAILED, "a refused address is not retried"
    (attempt,) = delivery.attempts
    assert attempt.status_code is None
    assert attempt.error.startswith("http.blocked_address: refusing to connect to 127.0.0.1")
    assert parts.receiver.received == []


async def test_a_delivery_left_pending_is_sent_by_a_dispatcher_started_later(
    parts: Parts,
) -> None:
    execution_id = await parts.run()  # no dispatcher runs: the server was down, say
    (pending,) = await parts.deliveries(execution_id)
    assert (pending.state, pending.attempt_count) == (DeliveryState.PENDING, 0)
    parts.dispatcher()
    assert (await parts.ended(execution_id)).state is DeliveryState.DELIVERED


async def test_a_send_cut_off_by_a_stop_is_sent_again_once_its_lease_is_over(
    parts: Parts,
) -> None:
    parts.receiver.delay = 1.0  # the first dispatcher stops while the receiver holds the request
    first = parts.dispatcher(lease_seconds=0.5)
    execution_id = await parts.run()
    await parts.receiver.wait_for(1)
    await first.stop(grace=0)
    (cut_off,) = await parts.deliveries(execution_id)
    assert (cut_off.state, cut_off.attempts) == (DeliveryState.PENDING, [])

    parts.receiver.delay = 0.0
    parts.dispatcher()  # a restarted server's
    delivery = await parts.ended(execution_id)
    assert delivery.state is DeliveryState.DELIVERED
    assert [a.status_code for a in delivery.attempts] == [200]
    ids = {r.headers["webhook-id"] for r in parts.receiver.received}
    assert ids == {str(delivery.id)}


async def test_two_dispatchers_never_send_the_same_delivery_at_once(parts: Parts) -> None:
    executions = [await parts.run() for _ in range(6)]
    parts.receiver.delay = 0.2
    for _ in range(2):
        parts.dispatcher(concurrency=3)
    for execution_id in executions:
        assert (await parts.ended(execution_id)).state is DeliveryState.DELIVERED
    ids = [r.headers["webhook-id"] for r in parts.receiver.received]
    assert len(ids) == len(set(ids)) == len(executions)


async def test_deliveries_are_listed_to_any_role_of_the_tenant_only(
    parts: Parts, tenant_b: Tenant
) -> None:
    execution_id = await parts.run()
    viewer = Principal(tenant_id=parts.editor.tenant_id, role=Role.VIEWER, api_key_id=None)
    assert len(await parts.webhooks.deliveries(viewer, execution_id)) == 1
    stranger = Principal(tenant_id=tenant_b.id, role=Role.ADMIN, api_key_id=None)
    with pytest.raises(NotFoundError):
        await parts.webhooks.deliveries(stranger, execution_id)
    with pytest.raises(NotFoundError):
        await parts.webhooks.deliveries(parts.editor, uuid.uuid4())


def test_retry_delays_double_with_jitter_up_to_the_most() -> None:
    policy = RetryPolicy(retry_delay=5, max_delay=3600, retry_window=86_400)
    delays = [policy.delay(attempt) for attempt in range(1, 14)]
    assert 5 <= delays[0] <= 7.5
    assert 10 <= delays[1] <= 12.5
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    assert delays[-1] == 3600
