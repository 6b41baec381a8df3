"""Completion webhooks through the REST gateway (a real Envoy in front of a real server): a
webhook source made over REST, a background run naming it, and
`GET /v1/{execution}/webhookDeliveries` listing the delivery with its attempts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import eventually
from support.gateway_fixtures import RunningGateway, start_gateway
from support.rest import create_openai_source, final_execution, start_execution
from support.runs import answer_spec
from support.webhook_receiver import WebhookReceiver, new_secret, webhook_receiver

from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer


@pytest.fixture
async def api(migrated_dsn: str, redis_url: str, owner: object) -> AsyncIterator[RunningApi]:
    settings = api_settings(
        migrated_dsn, redis_url, webhook_retry_delay=0.05, webhook_poll_interval=0.05
    )
    async with running_api(settings) as running:
        yield running


@pytest.fixture
async def gateway(api: RunningApi, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with start_gateway(api, tmp_path / "envoy") as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as receiver:
        yield receiver


async def test_a_background_run_names_a_webhook_and_its_deliveries_are_listed_over_rest(
    gateway: RunningGateway, receiver: WebhookReceiver, provider: FakeProviderServer
) -> None:
    secret = new_secret()
    async with gateway.client() as rest:
        await create_openai_source(rest, provider)
        hook = receiver.source(secret)
        response = await rest.post(
            "/v1/sources",
            json={
                "display_name": "hook",
                "type": "webhook",
                "config": hook.config,
                "secrets": {"secret": secret},
            },
        )
        assert response.status_code == 200, response.text
        receiver.answers = [503]
        started = await start_execution(rest, spec=answer_spec(), webhook_source="hook")
        name = started["name"]
        await final_execution(rest, name)

    received = await receiver.wait_for(2)
    assert Webhook(secret).verify(received[1].body, received[1].headers)["data"]["execution"] == (
        name
    )

    async with gateway.client(Role.VIEWER) as viewer:

        async def delivered() -> dict[str, Any] | None:
            response = await viewer.get(f"/v1/{name}/webhookDeliveries")
            assert response.status_code == 200, response.text
            (delivery,) = response.json()["deliveries"]
            return delivery if delivery["state"] == "STATE_DELIVERED" else None

        delivery = await eventually(delivered)
    assert delivery["id"] == received[0].headers["webhook-id"]
    assert delivery["event_type"] == "execution.completed"
    assert [(a["attempt"], a["status_code"]) for a in delivery["attempts"]] == [(1, 503), (2, 200)]
    assert delivery["payload"]["data"]["status"] == "completed"

    async with gateway.client(None) as other:
        response = await other.get(
            f"/v1/{name}/webhookDeliveries", headers={"x-api-key": gateway.api.other_tenant_key}
        )
    assert response.status_code == 404, response.text
