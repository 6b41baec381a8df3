"""Webhook sources: where AgentFlow tells a run's end (docs/webhooks.md). No node uses them.

Config: `url` (http or https), `allow_private_network` (as the `http` source's), `timeout`;
secret `secret`, the Standard Webhooks signing key `whsec_<base64 of 24 to 64 bytes>`. Each
message is signed by the `standardwebhooks` library (headers `webhook-id`,
`webhook-timestamp`, `webhook-signature`) and sent through `safe_http`'s guarded client, which
refuses private, loopback and link-local addresses unless the source allows them. Redirects
are not followed: a 3xx is an answer like any other non-2xx. `check()` sends a signed
`webhook.test` message.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict, Field
from standardwebhooks import Webhook

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.model.webhooks import SendResult
from agentflow_grpc.sources.base import parse_config
from agentflow_grpc.sources.safe_http import BlockedAddressError, create_client

TYPE_NAME = "webhook"
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
USER_AGENT = "AgentFlow-Webhooks/1"
TEST_EVENT = "webhook.test"


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://[^/?#\s]+", description="Where messages are POSTed.")
    allow_private_network: bool = Field(
        False, description="Allow private, loopback and link-local addresses (internal hosts)."
    )
    timeout: float = Field(10.0, gt=0, le=60, description="Seconds one delivery may take.")


def signing_key(definition: SourceDefinition) -> bytes:
    """The signing key of `secrets.secret` (`whsec_` + base64 of 24 to 64 bytes)."""
    secret = definition.secrets.get("secret")
    where = f"source {definition.name!r}: secrets.secret"
    if secret is None:
        problem = "is required (whsec_ + base64 of 24 to 64 bytes)"
    else:
        text = secret.get_secret_value()
        if not text.startswith(SECRET_PREFIX):
            problem = f"must start with {SECRET_PREFIX!r}"
        else:
            try:
                key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
            except (binascii.Error, ValueError):
                problem = f"is not valid base64 after {SECRET_PREFIX!r}"
            else:
                if MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
                    return key
                problem = (
                    f"decodes to {len(key)} bytes; give {MIN_SECRET_BYTES} to "
                    f"{MAX_SECRET_BYTES} random bytes"
                )
    raise SourceConfigError(f"{where} {problem}", field="secrets.secret")


def encode(message: dict[str, Any]) -> bytes:
    """A message's body, exactly as signed and sent."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class WebhookAdapter:
    type_name: str = TYPE_NAME

    def open(self, definition: SourceDefinition) -> WebhookSource:
        config = parse_config(WebhookConfig, definition)
        return WebhookSource(definition, config, signing_key(definition))


class WebhookSource:
    def __init__(self, definition: SourceDefinition, config: WebhookConfig, key: bytes) -> None:
        self.definition = definition
        self._config = config
        self._signer = Webhook(key)
        self._client = create_client(
            allow_private_network=config.allow_private_network,
            headers={"user-agent": USER_AGENT, "content-type": "application/json"},
            timeout=config.timeout,
            follow_redirects=False,
        )

    @property
    def url(self) -> str:
        return self._config.url

    @property
    def timeout(self) -> float:
        return self._config.timeout

    def headers(self, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
        """The Standard Webhooks headers of `body` sent as `message_id` at `now`."""
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message_id, now, body),
        }

    async def send(self, message_id: str, body: bytes) -> SendResult:
        """POST `body` signed as `message_id` (now); what came of it. Never raises for the
        network or the receiver."""
        headers = self.headers(message_id, body, datetime.now(UTC))
        try:
            response = await self._client.post(self._config.url, content=body, headers=headers)
        except BlockedAddressError as exc:
            return SendResult(None, f"{exc.code}: {exc.message}", permanent=True)
        except httpx2.TimeoutException:
            return SendResult(None, f"no answer within {self._config.timeout:g} s")
        except httpx2.HTTPError as exc:
            return SendResult(None, f"cannot reach {self._origin()}: {exc or type(exc).__name__}")
        await response.aclose()
        code = response.status_code
        return SendResult(code, "" if 200 <= code < 300 else f"answered HTTP {code}")

    async def check(self) -> str:
        """Send a signed `webhook.test` message; NodeFailure unless the receiver answers 2xx."""
        message = {
            "type": TEST_EVENT,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"source": self.definition.name},
        }
        result = await self.send(f"msg_{uuid.uuid4().hex}", encode(message))
        if result.delivered:
            return f"POST {self._config.url} ({TEST_EVENT}) answered {result.status_code}"
        if result.status_code is not None:
            raise NodeFailure("webhook.rejected", f"{self._config.url} {result.error}")
        if result.permanent:
            raise NodeFailure("http.blocked_address", result.error)
        raise NodeFailure("webhook.unavailable", result.error, retryable=True)

    def _origin(self) -> str:
        return str(httpx2.URL(self._config.url).origin)

    async def aclose(self) -> None:
        await self._client.aclose()


ADAPTERS = (WebhookAdapter(),)
