"""HTTP API sources: a base URL, an auth header and default headers for `http` nodes.

Every request goes through `safe_http`'s guarded client, which refuses private, loopback and
link-local addresses unless the source sets `allow_private_network`. The token (`secrets.token`,
sent in `auth_header`) never leaves the base URL's origin, redirects included. Requests are
stateless: the shared client keeps no cookies.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy

import httpx2
from pydantic import BaseModel, ConfigDict, Field

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.base import parse_config
from agentflow_grpc.sources.safe_http import BlockedAddressError, create_client


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
        config = parse_config(HttpApiConfig, definition)
        headers = dict(config.headers)
        token = definition.secrets.get("token")
        credential: str | None = None
        if token is not None:
            secret = token.get_secret_value()
            headers[config.auth_header] = (
                f"{config.auth_scheme} {secret}" if config.auth_scheme else secret
            )
            credential = config.auth_header
        return HttpApiSource(definition, config, headers, credential)


class HttpApiSource:
    def __init__(
        self,
        definition: SourceDefinition,
        config: HttpApiConfig,
        headers: dict[str, str],
        credential_header: str | None = None,
    ) -> None:
        self.definition = definition
        self._config = config
        self._origin = httpx2.URL(config.base_url).origin
        self._credential_header = credential_header
        self._client = create_client(
            allow_private_network=config.allow_private_network,
            base_url=config.base_url,
            headers=headers,
            timeout=config.timeout,
            follow_redirects=config.follow_redirects,
        )
        self._client.event_hooks = {"request": [self._keep_credential_home]}
        # The client is shared by every execution using the source: cookies a response sets
        # must not ride along on other requests (other runs, other users of the tenant).
        self._client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    async def _keep_credential_home(self, request: httpx2.Request) -> None:
        """The token goes to the source's origin only, also when a redirect leads elsewhere.

        httpx2 itself drops only `Authorization` on such redirects, not a custom auth header.
        A source allowed into the private network is allowed there for its own origin only:
        a redirect elsewhere could otherwise reach any internal address (cloud metadata, …).
        """
        if request.url.origin == self._origin:
            return
        if self._config.allow_private_network:
            raise NodeFailure(
                "http.blocked_address",
                f"source {self.definition.name!r} may reach private addresses, but only at "
                f"{self._config.base_url}; a request to "
                f"{request.url.scheme}://{request.url.netloc.decode()} was refused",
            )
        if self._credential_header is not None:
            request.headers.pop(self._credential_header, None)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def client(self) -> httpx2.AsyncClient:
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check(self) -> str:
        try:
            response = await self._client.get(self._config.base_url)
        except BlockedAddressError as exc:
            raise NodeFailure(exc.code, exc.message) from exc
        except httpx2.HTTPError as exc:
            raise NodeFailure(
                "http.unavailable", f"cannot reach {self._origin}: {exc}", retryable=True
            ) from exc
        return f"GET {self._config.base_url} answered {response.status_code}"


ADAPTERS = (HttpApiAdapter(),)
