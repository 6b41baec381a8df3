"""Completion webhooks over gRPC: webhook sources (secrets checked, TestSource pings), a run
request naming one, ListWebhookDeliveries (any role, the tenant's executions only), and specs
naming a webhook source that is missing or of another type.

A real server (its dispatcher polling every 50 ms), the fake provider and a local receiver.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from standardwebhooks import Webhook
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import (
    Client,
    assert_invalid,
    client_of,
    create_openai_source,
    create_workflow,
    eventually,
    field_violations,
    rpc_error,
    struct,
)
from support.runs import answer_spec
from support.webhook_receiver import WebhookReceiver, new_secret, webhook_receiver

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import source_pb2 as src
from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

Delivery = ex.WebhookDelivery


@pytest.fixture
async def api(migrated_dsn: str, redis_url: str, owner: object) -> AsyncIterator[RunningApi]:
    settings = api_settings(
        migrated_dsn, redis_url, webhook_retry_delay=0.05, webhook_poll_interval=0.05
    )
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
async def client(api: RunningApi) -> AsyncIterator[Client]:
    async with api.channel() as channel:
        yield client_of(channel)


async def create_hook(
    client: Client, md: Any, receiver: WebhookReceiver, secret: str, *, name: str = "hook"
) -> src.Source:
    definition = receiver.source(secret, name=name)
    source = src.Source(
        display_name=name,
        type="webhook",
        config=struct(definition.config),
        secrets={"secret": secret},
    )
    return await client.sources.CreateSource(  # type: ignore[no-any-return]
        src.CreateSourceRequest(source=source), metadata=md
    )


async def run_to_end(client: Client, md: Any, **request: Any) -> str:
    """ExecuteWorkflow of `answer_spec` to its end; the execution's name."""
    call = client.executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(
            spec=struct(request.pop("spec", answer_spec())),
            inputs=struct({"question": "why?"}),
            **request,
        ),
        metadata=md,
    )
    events = [event async for event in call]
    assert events[-1].type == "execution_completed", events[-1]
    return str(events[-1].execution)


async def test_a_run_naming_a_webhook_source_is_delivered_and_listed_with_its_attempts(
    api: RunningApi, client: Client, receiver: WebhookReceiver, provider: FakeProviderServer
) -> None:
    md = api.metadata()
    secret = new_secret()
    await create_openai_source(client, md, f"{provider.url}/v1")
    await create_hook(client, md, receiver, secret)
    receiver.answers = [500]
    name = await run_to_end(client, md, webhook_source="hook")

    received = await receiver.wait_for(2)
    payload = Webhook(secret).verify(received[1].body, received[1].headers)
    assert payload["data"]["execution"] == name

    async def delivered() -> list[Delivery] | None:
        response = await client.executions.ListWebhookDeliveries(
            ex.ListWebhookDeliveriesRequest(name=name), metadata=api.metadata(Role.VIEWER)
        )
        found = list(response.deliveries)
        return found if found and found[0].state == Delivery.STATE_DELIVERED else None

    (delivery,) = await eventually(delivered)
    assert delivery.id == received[0].headers["webhook-id"]
    assert delivery.execution == name
    assert delivery.event_type == "execution.completed"
    assert delivery.attempt_count == 2
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [(1, 500), (2, 200)]
    assert delivery.attempts[0].error == "answered HTTP 500"
    assert delivery.HasField("deliver_time")
    assert not delivery.HasField("next_attempt_time")
    assert delivery.payload["type"] == "execution.completed"


async def test_deliveries_of_another_tenants_or_an_unknown_execution_are_not_found(
    api: RunningApi, client: Client, receiver: WebhookReceiver, provider: FakeProviderServer
) -> None:
    md = api.metadata()
    await create_openai_source(client, md, f"{provider.url}/v1")
    await create_hook(client, md, receiver, new_secret())
    name = await run_to_end(client, md, webhook_source="hook")
    stranger = (("x-api-key", api.other_tenant_key),)
    for execution, metadata in ((name, stranger), (f"executions/{uuid.uuid4()}", md)):
        error = await rpc_error(
            client.executions.ListWebhookDeliveries(
                ex.ListWebhookDeliveriesRequest(name=execution), metadata=metadata
            )
        )
        assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(
        client.executions.ListWebhookDeliveries(
            ex.ListWebhookDeliveriesRequest(name="workflows/x"), metadata=md
        )
    )
    assert_invalid(error, "name")


async def test_a_run_request_naming_a_source_that_is_no_webhook_is_refused(
    api: RunningApi, client: Client, provider: FakeProviderServer
) -> None:
    md = api.metadata()
    await create_openai_source(client, md, f"{provider.url}/v1")
    for webhook_source in ("nope", "openai-main"):
        error = await rpc_error(
            client.executions.StartExecution(
                ex.StartExecutionRequest(
                    spec=struct(answer_spec()),
                    inputs=struct({"question": "why?"}),
                    webhook_source=webhook_source,
                ),
                metadata=md,
            )
        )
        assert_invalid(error, "webhook_source")


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",  # no whsec_ prefix
        "whsec_not base64!",
        "whsec_" + "QUJDRA==",  # 4 bytes
        new_secret(65),
    ],
)
async def test_a_webhook_secret_not_in_the_standard_form_is_refused_on_create(
    api: RunningApi, client: Client, receiver: WebhookReceiver, secret: str
) -> None:
    error = await rpc_error(create_hook(client, api.metadata(), receiver, secret))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in field_violations(error)] == ["secrets.secret"]
    assert "whsec_" in (error.details() or "") or "bytes" in (error.details() or "")


async def test_testing_a_webhook_source_sends_a_signed_ping_and_updates_keep_the_secret(
    api: RunningApi, client: Client, receiver: WebhookReceiver
) -> None:
    md = api.metadata()
    secret = new_secret()
    source = await create_hook(client, md, receiver, secret)
    result = await client.sources.TestSource(src.TestSourceRequest(name=source.name), metadata=md)
    assert result.ok, result.message
    (ping,) = await receiver.wait_for(1)
    assert Webhook(secret).verify(ping.body, ping.headers)["type"] == "webhook.test"

    source.description = "told when runs end"
    updated = await client.sources.UpdateSource(
        src.UpdateSourceRequest(
            source=source, update_mask=field_mask_pb2.FieldMask(paths=["description"])
        ),
        metadata=md,
    )
    assert updated.description == "told when runs end"

    receiver.default = 410
    result = await client.sources.TestSource(src.TestSourceRequest(name=source.name), metadata=md)
    assert not result.ok
    assert "webhook.rejected" in result.message
    assert "410" in result.message


async def test_a_spec_naming_a_missing_or_non_webhook_source_is_invalid(
    api: RunningApi, client: Client, provider: FakeProviderServer
) -> None:
    md = api.metadata()
    await create_openai_source(client, md, f"{provider.url}/v1")
    for source, code in (("nope", "source.unknown"), ("openai-main", "source.incompatible")):
        spec = {**answer_spec(), "webhook": {"source": source}}
        error = await rpc_error(create_workflow(client, md, spec))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(error) == [("workflow.spec/webhook/source", code)]
