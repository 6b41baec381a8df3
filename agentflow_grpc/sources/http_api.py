"""HTTP API sources: a base URL, an auth header and default headers for `http` nodes.

Every request goes through `safe_http`'s guarded client, which refuses private, loopback and
link-local addresses unless the source sets `allow_private_network`.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow_grpc.sources.base import SourceDefinition
from agentflow_grpc.sources.registry import SourceConfigError
from agentflow_grpc.sources.safe_http import create_client


class HttpApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(pattern=r"^https?://", description="Relative node URLs join this.")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every request.")
    auth_header: str = Field("Authorization", min_length=1)
    auth_scheme: str | None = Field("Bearer", description="Prefix of the token; null for none.")
    allow_private_network: bool = Field(
        False, description="Allow private, loopback and link-local addresses (internal APIs)."
    )
    timeout: float = Field(30.0, gt=0, description="Seconds per request.")
    follow_redirects: bool = True


@dataclass(frozen=True, slots=True)
class HttpApiAdapter:
    type_name: str = "http"

    def open(self, definition: SourceDefinition) -> HttpApiSource:
        try:
            config = HttpApiConfig.model_validate(definition.config)
        except ValidationError as exc:
            raise SourceConfigError(f"source {definition.name!r}: {exc}") from None
        headers = dict(config.headers)
        token = definition.secrets.get("token")
        if token is not None:
            secret = token.get_secret_value()
            headers[config.auth_header] = (
                f"{config.auth_scheme} {secret}" if config.auth_scheme else secret
            )
        return HttpApiSource(definition, config, headers)


class HttpApiSource:
    def __init__(
        self, definition: SourceDefinition, config: HttpApiConfig, headers: dict[str, str]
    ) -> None:
        self.definition = definition
        self._config = config
        self._client = create_client(
            allow_private_network=config.allow_private_network,
            base_url=config.base_url,
            headers=headers,
            timeout=config.timeout,
            follow_redirects=config.follow_redirects,
        )

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def client(self) -> httpx2.AsyncClient:
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()


ADAPTERS = (HttpApiAdapter(),)
