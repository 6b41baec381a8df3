"""Azure OpenAI (`azure_openai`): chat and images through the `openai` SDK's Azure client, on the
source's own config (`AzureOpenAIConfig`), authenticated by an API key or by Microsoft Entra ID.

Requests go to `{azure_endpoint}/openai/deployments/{deployment}/chat/completions` (and
`…/images/generations`) with `?api-version={api_version}`: a node's model, or the source's
`model` / `image_model`, names the deployment through `config.deployments` (a model with no entry
is its own deployment, Azure's usual naming); the request's `model` field is the deployment too,
as the SDK sends it. Spans and metrics keep the model's name; the reply names the model Azure
reports.

Authentication (`config.auth`):

- `api_key` (the default): the secret `api_key`, sent as the `api-key` header.
- `entra_id`: a Microsoft Entra ID access token for `config.token_scope` (Azure AI services'
  `https://cognitiveservices.azure.com/.default`), as `Authorization: Bearer`, from azure-identity:
  with the secret `client_secret`, the service principal `config.client_id` of
  `config.tenant_id` (client credentials, `ClientSecretCredential`); without it, the identity the
  server runs as (`DefaultAzureCredential` with its developer-tool credentials excluded: the
  AZURE_* environment variables, a workload identity, a managed identity; `client_id`, when
  given, picks a user-assigned one). azure-identity caches the token and fetches a new one before
  it expires; the credential is closed with the source. A token that cannot be had fails the call
  as the provider would: `provider.unauthenticated` (a refused credential), `provider.unavailable`
  or `provider.timeout` (the identity platform unreachable or slow; retryable).

`ca_certificates` (PEM) adds certificate authorities the source trusts, for the endpoint and the
identity platform both (a private CA, a TLS-inspecting proxy). Everything else, the calls, the
limits, the spans and metrics, is `OpenAICompatibleSource`'s (`openai_compatible.py`).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp
import httpx2
import openai
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import (
    ClientSecretCredential,
    DefaultAzureCredential,
    get_bearer_token_provider,
)
from openai._models import FinalRequestOptions
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.failures import NodeFailure, for_http_status, retry_after_seconds
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.base import ChatMetrics, ProviderLimiter, ProviderLimits, parse_config
from agentflow_grpc.sources.genai_telemetry import SourceChatMetrics
from agentflow_grpc.sources.openai_compatible import OpenAICompatibleSource, OpenAIConfig
from agentflow_grpc.sources.rate_limits import CallGate

PROVIDER_NAME = "azure.ai.openai"  # OpenTelemetry's gen_ai.provider.name
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
# The paths the SDK's Azure client routes to a deployment (openai.lib.azure).
DEPLOYMENT_PATHS = frozenset(
    {
        "/completions",
        "/chat/completions",
        "/embeddings",
        "/audio/transcriptions",
        "/audio/translations",
        "/audio/speech",
        "/images/generations",
        "/images/edits",
    }
)
# Azure's deployment names: letters, digits, `-`, `_`, `.`, at most 64.
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TENANT = re.compile(r"^[A-Za-z0-9.-]+$")  # a GUID or a domain (azure-identity's check)


class AzureOpenAIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    azure_endpoint: str = Field(
        description="The resource's endpoint, e.g. https://my-resource.openai.azure.com."
    )
    api_version: str = Field(
        min_length=1, description="Azure OpenAI's API version, e.g. 2024-10-21."
    )
    model: str | None = Field(None, description="Model used when a node names none.")
    image_model: str | None = Field(None, description="Image model used when a node names none.")
    deployments: dict[str, str] = Field(
        default_factory=dict,
        description="Model name → deployment name; a model with no entry is its own deployment.",
    )
    auth: Literal["api_key", "entra_id"] = Field(
        "api_key", description="`api_key` (secret `api_key`) or `entra_id` (Microsoft Entra ID)."
    )
    tenant_id: str | None = Field(None, description="Entra ID: the service principal's tenant.")
    client_id: str | None = Field(
        None,
        description="Entra ID: the service principal's (or user-assigned identity's) client ID.",
    )
    authority_host: str | None = Field(
        None,
        description="Entra ID: the identity platform's host (https), e.g. "
        "login.microsoftonline.us; default the public cloud's (or AZURE_AUTHORITY_HOST).",
    )
    token_scope: str = Field(
        COGNITIVE_SERVICES_SCOPE, description="Entra ID: the scope the token is asked for."
    )
    ca_certificates: str | None = Field(
        None,
        description="PEM: certificate authorities to trust besides the system's, for the "
        "endpoint and the identity platform.",
    )
    organization: str | None = None
    timeout: float = Field(600.0, gt=0, description="Seconds per HTTP request.")
    default_headers: dict[str, str] = Field(default_factory=dict)
    limits: ProviderLimits | None = Field(
        None, description="Calls and tokens a minute, for every run and server together."
    )

    @field_validator("azure_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL, e.g. https://my-resource.openai.azure.com")
        return value

    @field_validator("deployments")
    @classmethod
    def _deployments(cls, value: dict[str, str]) -> dict[str, str]:
        for model, deployment in value.items():
            if not model or not _DEPLOYMENT.match(deployment):
                raise ValueError(
                    f"{model!r} → {deployment!r}: a deployment name is 1 to 64 letters, digits, "
                    "'-', '_' or '.'"
                )
        return value

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str | None) -> str | None:
        if value is not None and not _TENANT.match(value):
            raise ValueError("a tenant ID is a GUID or a domain (letters, digits, '-', '.')")
        return value

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value if "://" in value else f"https://{value}")
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https URL or a host name (the identity platform is TLS)")
        return value

    @field_validator("token_scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not value.endswith("/.default") or " " in value:
            raise ValueError("one scope ending in /.default (a resource's application ID URI)")
        return value


class AzureClient(openai.AsyncAzureOpenAI):
    """The SDK's Azure client, sending each model to its deployment (`deployments`) and closing
    the Entra ID credential its token provider uses along with itself."""

    def __init__(
        self,
        *,
        deployments: Mapping[str, str] | None = None,
        credential: AsyncTokenCredential | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._deployments = dict(deployments or {})
        self._credential = credential

    def deployment(self, model: str) -> str:
        return self._deployments.get(model, model)

    def _build_request(
        self, options: FinalRequestOptions, *, retries_taken: int = 0
    ) -> httpx2.Request:
        # The SDK routes `{model}` to `/deployments/{model}`; route the mapped deployment instead
        # (the SDK leaves a path that names its deployment as it is).
        data = options.json_data
        if options.url in DEPLOYMENT_PATHS and isinstance(data, Mapping):
            model = data.get("model")
            if isinstance(model, str):
                deployment = self.deployment(model)
                options.url = f"/deployments/{quote(deployment, safe='')}{options.url}"
                options.json_data = {**data, "model": deployment}
        return super()._build_request(options, retries_taken=retries_taken)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            credential, self._credential = self._credential, None
            if credential is not None:
                await credential.close()


class _TrustingTransport(AioHttpTransport):  # type: ignore[misc]
    """azure-core's aiohttp transport, verifying servers against `context` (the system's CAs
    and the source's `ca_certificates`). Its session is made on first use, as azure-core makes
    its own: aiohttp needs the running loop."""

    session: aiohttp.ClientSession | None

    def __init__(self, context: ssl.SSLContext, **options: Any) -> None:
        super().__init__(**options)  # connection_timeout, read_timeout
        self._context = context
        self._made = False

    async def open(self) -> None:
        if self.session is None and not self._made:
            self._made = True
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._context),
                trust_env=True,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        await super().open()


def trust(definition: SourceDefinition, config: AzureOpenAIConfig) -> ssl.SSLContext | None:
    """The TLS context verifying with the system's CAs and `config.ca_certificates`; None when
    the source adds none."""
    if config.ca_certificates is None:
        return None
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cadata=config.ca_certificates)
    except (ssl.SSLError, ValueError) as exc:
        raise SourceConfigError(
            f"source {definition.name!r}: config.ca_certificates: not PEM certificates ({exc})"
        ) from None
    return context


def credential(
    definition: SourceDefinition, config: AzureOpenAIConfig, context: ssl.SSLContext | None
) -> AsyncTokenCredential:
    """The Entra ID credential of an `entra_id` source: its service principal's, or (no
    `client_secret`) the identity the server runs as."""
    secret = definition.secrets.get("client_secret")
    missing = [
        f"config.{name}"
        for name, value in (("tenant_id", config.tenant_id), ("client_id", config.client_id))
        if value is None
    ]
    if secret is not None and missing:
        raise SourceConfigError(
            f"source {definition.name!r}: auth entra_id with the secret `client_secret` (a "
            f"service principal) needs {' and '.join(missing)}"
        )
    options: dict[str, Any] = {}
    if config.authority_host is not None:
        options["authority"] = config.authority_host
    if secret is None or config.tenant_id is None or config.client_id is None:
        if context is not None:
            options["transport"] = _TrustingTransport(context)
        # The server's own identity, with azure-identity's own retries and timeouts (those of
        # the managed identity endpoint are tuned to it); never a developer's signed-in tools.
        if config.client_id is not None:
            options["managed_identity_client_id"] = config.client_id
            options["workload_identity_client_id"] = config.client_id
        if config.tenant_id is not None:
            options["workload_identity_tenant_id"] = config.tenant_id
        return DefaultAzureCredential(
            exclude_cli_credential=True,
            exclude_developer_cli_credential=True,
            exclude_powershell_credential=True,
            exclude_visual_studio_code_credential=True,
            exclude_shared_token_cache_credential=True,
            **options,
        )
    # A service principal. The node's retry policy retries, as it does the provider's calls.
    timeouts = {"connection_timeout": config.timeout, "read_timeout": config.timeout}
    if context is not None:
        options["transport"] = _TrustingTransport(context, **timeouts)
    options.update(retry_total=0, **timeouts)
    return ClientSecretCredential(
        config.tenant_id, config.client_id, secret.get_secret_value(), **options
    )


def identity_failure(exc: AzureError, secret: str | None) -> NodeFailure:
    """A failure to get an Entra ID token, as the provider's own failures are mapped."""
    detail = (exc.message or type(exc).__name__).split("\n", 1)[0][:500]
    if secret:
        detail = detail.replace(secret, "***")
    if isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError):
        return NodeFailure(
            "provider.timeout", "Microsoft Entra ID did not answer in time", retryable=True
        )
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return NodeFailure(
            "provider.unavailable", f"cannot reach Microsoft Entra ID: {detail}", retryable=True
        )
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if status is not None and (status in (408, 429) or status >= 500):
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        wait = retry_after_seconds(headers.get("Retry-After"))
        return for_http_status(
            "provider", status, f"Microsoft Entra ID: {detail}", retry_after=wait
        )
    return NodeFailure("provider.unauthenticated", f"no Entra ID token: {detail}")


def bearer_tokens(
    credential: AsyncTokenCredential, scope: str, secret: str | None
) -> Callable[[], Awaitable[str]]:
    """The SDK's `azure_ad_token_provider`: a token for `scope` (cached, refreshed before it
    expires, by azure-identity), or the NodeFailure of not getting one."""
    provider = get_bearer_token_provider(credential, scope)

    async def token() -> str:
        try:
            return await provider()
        except AzureError as exc:
            raise identity_failure(exc, secret) from None

    return token


@dataclass(frozen=True, slots=True)
class AzureOpenAIAdapter:
    metrics: ChatMetrics  # every chat call is recorded here
    limiter: ProviderLimiter | None = None  # counts calls against `config.limits`
    # Whether an entra_id source without a `client_secret` may sign in as the identity the
    # server runs as. Off unless the operator says so (AGENTFLOW_AZURE_SERVER_IDENTITY): on a
    # server shared by tenants it would lend every tenant the server's own Azure access.
    server_identity: bool = False
    type_name: str = "azure_openai"

    def open(self, definition: SourceDefinition) -> OpenAICompatibleSource:
        config = parse_config(AzureOpenAIConfig, definition)
        if (
            config.auth == "entra_id"
            and "client_secret" not in definition.secrets
            and not self.server_identity
        ):
            raise SourceConfigError(
                f"source {definition.name!r}: auth entra_id needs the secret `client_secret` "
                "(with config.tenant_id and config.client_id); signing in as the server's own "
                "identity is off on this server (AGENTFLOW_AZURE_SERVER_IDENTITY)"
            )
        context = trust(definition, config)
        auth: dict[str, Any]
        entra: AsyncTokenCredential | None = None
        if config.auth == "api_key":
            api_key = definition.secrets.get("api_key")
            if api_key is None:
                raise SourceConfigError(
                    f"source {definition.name!r} needs the secret `api_key` (or config.auth "
                    "entra_id)"
                )
            auth = {"api_key": api_key.get_secret_value()}
        else:
            entra = credential(definition, config, context)
            secret = definition.secrets.get("client_secret")
            auth = {
                "azure_ad_token_provider": bearer_tokens(
                    entra, config.token_scope, secret.get_secret_value() if secret else None
                )
            }
        client = AzureClient(
            deployments=config.deployments,
            credential=entra,
            azure_endpoint=config.azure_endpoint,
            api_version=config.api_version,
            timeout=config.timeout,
            max_retries=0,
            default_headers=config.default_headers or None,
            organization=config.organization,
            # aiohttp parses HTTP in C (openai_adapters.py); one client per opened source.
            http_client=openai.DefaultAioHttpClient(
                verify=context if context is not None else True
            ),
            **auth,
        )
        return OpenAICompatibleSource(
            definition,
            OpenAIConfig(
                model=config.model,
                image_model=config.image_model,
                organization=config.organization,
                timeout=config.timeout,
                default_headers=config.default_headers,
                limits=config.limits,
            ),
            client,
            images=True,
            gate=CallGate(definition, config.limits, self.limiter),
            metrics=SourceChatMetrics(self.metrics, PROVIDER_NAME, config.model),
        )
