"""The `webhook` source: messages signed as Standard Webhooks say (verified by the library a
receiver would use), sent through the guarded client (private addresses refused unless allowed),
redirects not followed; secrets in the `whsec_` form only. A real receiver on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from standardwebhooks import Webhook
from support.webhook_receiver import WebhookReceiver, new_secret, webhook_receiver

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.sources.webhook import WebhookSource, encode


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as receiver:
        yield receiver


def opened(receiver: WebhookReceiver, secret: str, **config: object) -> WebhookSource:
    source = SourceRegistry.default(metrics=Metrics()).open(receiver.source(secret, **config))
    assert isinstance(source, WebhookSource)
    return source


async def test_a_message_is_signed_so_that_the_standard_library_verifies_it(
    receiver: WebhookReceiver,
) -> None:
    secret = new_secret()
    source = opened(receiver, secret)
    message = {"type": "execution.completed", "data": {"text": "naïve ✓"}}
    try:
        result = await source.send("msg_1", encode(message))
    finally:
        await source.aclose()
    assert (result.status_code, result.delivered, result.error) == (200, True, "")
    (received,) = receiver.received
    assert Webhook(secret).verify(received.body, received.headers) == message
    assert received.headers["webhook-id"] == "msg_1"
    assert received.headers["webhook-signature"].startswith("v1,")
    assert json.loads(received.body) == message


async def test_a_private_address_is_refused_unless_the_source_allows_it(
    receiver: WebhookReceiver,
) -> None:
    source = opened(receiver, new_secret(), allow_private_network=False)
    try:
        result = await source.send("msg_2", b"{}")
        with pytest.raises(NodeFailure) as caught:
            await source.check()
    finally:
        await source.aclose()
    assert (result.status_code, result.permanent) == (None, True)
    assert result.error.startswith("http.blocked_address:")
    assert (caught.value.code, caught.value.retryable) == ("http.blocked_address", False)
    assert receiver.received == [], "nothing reached the receiver"


async def test_a_non_2xx_answer_is_not_delivered_and_check_says_rejected(
    receiver: WebhookReceiver,
) -> None:
    receiver.default = 307  # a redirect is an answer like any other: not followed
    source = opened(receiver, new_secret())
    try:
        result = await source.send("msg_3", b"{}")
        with pytest.raises(NodeFailure) as caught:
            await source.check()
    finally:
        await source.aclose()
    assert (result.status_code, result.delivered, result.permanent) == (307, False, False)
    assert caught.value.code == "webhook.rejected"


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("c2VjcmV0", "must start with 'whsec_'"),
        ("whsec_%%%", "is not valid base64"),
        ("whsec_QUJDRA==", "decodes to 4 bytes"),
        (new_secret(65), "decodes to 65 bytes"),
    ],
)
def test_a_secret_not_in_the_standard_form_is_refused_naming_it(secret: str, says: str) -> None:
    receiver = WebhookReceiver(url="https://hooks.example")
    with pytest.raises(SourceConfigError) as caught:
        SourceRegistry.default(metrics=Metrics()).open(receiver.source(secret))
    assert caught.value.field == "secrets.secret"
    assert says in caught.value.message
    assert secret not in caught.value.message
