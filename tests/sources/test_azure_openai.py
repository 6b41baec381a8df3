"""Azure OpenAI (`azure_openai`) beyond the conformance suite: Microsoft Entra ID tokens, the
deployment of each model, images through the same source, config refusals.

Everything goes through the real SDKs (openai's Azure client, azure-identity) to the fake
provider: Azure's paths on its plain listener, its Microsoft identity platform over https on a
second listener of the same fake (azure-identity takes no authority but an https one), with a
certificate authority made for the session that the sources trust through `ca_certificates`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import msal
import psutil
import pytest
import requests
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.network import closed_port
from support.runs import for_node, of_type, output_of, run_document
from support.tls import LocalTls, local_tls

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.events import EventType
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability import spans
from agentflow_grpc.sources.azure_openai import AzureOpenAIAdapter
from agentflow_grpc.sources.base import UNRECORDED, ChatRequest, ChatResult, ImageRequest
from agentflow_grpc.sources.openai_compatible import OpenAICompatibleSource
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.testing import FakeProviderServer
from agentflow_grpc.testing._entra import COGNITIVE_SERVICES

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "5f2a1c3e-0d4b-4e8f-9a6b-1c2d3e4f5a6b"
SECRET = "entra-secret-7Q~b3c9d1e"
API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def tls() -> LocalTls:
    return local_tls()


@pytest.fixture(scope="module")
def identity(fake_provider: FakeProviderServer, tls: LocalTls) -> Iterator[FakeProviderServer]:
    """The session's fake provider served over https too: its Microsoft identity platform."""
    with FakeProviderServer(fake_provider.provider, ssl_context=tls.server_context()) as server:
        yield server


@pytest.fixture
def app(provider: FakeProviderServer) -> None:
    """The service principal the sources sign in as, registered with the fake Entra ID."""
    provider.provider.entra.register_app(TENANT, CLIENT, SECRET)


def api_key_source(provider: FakeProviderServer, **config: Any) -> SourceDefinition:
    return SourceDefinition(
        name="azure",
        type="azure_openai",
        config={"azure_endpoint": provider.url, "api_version": API_VERSION, **config},
        secrets={"api_key": "azure-key-2b8e"},
    )


def entra_source(
    provider: FakeProviderServer,
    identity: FakeProviderServer,
    tls: LocalTls,
    *,
    secret: str | None = SECRET,
    **config: Any,
) -> SourceDefinition:
    return SourceDefinition(
        name="azure",
        type="azure_openai",
        config={
            "azure_endpoint": provider.url,
            "api_version": API_VERSION,
            "model": "gpt-4o",
            "auth": "entra_id",
            "tenant_id": TENANT,
            "client_id": CLIENT,
            "authority_host": identity.url,
            "ca_certificates": tls.ca_pem,
            **config,
        },
        secrets={} if secret is None else {"client_secret": secret},
    )


def open_source(
    definition: SourceDefinition, *, server_identity: bool = True
) -> OpenAICompatibleSource:
    """`definition` opened on a server that lets sources sign in as its own identity."""
    return AzureOpenAIAdapter(UNRECORDED, server_identity=server_identity).open(definition)


async def chat(definition: SourceDefinition, *prompts: str, model: str | None = None) -> ChatResult:
    """Each prompt asked in turn of one opened source; the last result."""
    source = open_source(definition)
    try:
        result = None
        for prompt in prompts:
            request = ChatRequest([{"role": "user", "content": prompt}], model=model)
            result = await source.chat(request, lambda _: None)
    finally:
        await source.aclose()
    assert result is not None
    return result


async def chat_failure(definition: SourceDefinition) -> NodeFailure:
    with pytest.raises(NodeFailure) as caught:
        await chat(definition, "hi")
    return caught.value


def tls_context(tls: LocalTls) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=tls.ca_pem)
    return context


# --- Microsoft Entra ID ---


async def test_the_token_entra_id_issued_is_the_bearer_of_every_call(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    result = await chat(entra_source(provider, identity, tls), "one", "two")

    assert result.text == "Echo: two"
    (token_request,) = provider.provider.entra.token_requests  # cached for the second call
    assert token_request.tenant_id == TENANT
    assert token_request.form == {
        "client_id": CLIENT,
        "client_secret": SECRET,
        "grant_type": "client_credentials",
        "scope": "https://cognitiveservices.azure.com/.default",
    }
    (token,) = provider.provider.entra.issued
    calls = provider.requests
    assert [call.path for call in calls] == ["/openai/deployments/gpt-4o/chat/completions"] * 2
    for call in calls:
        assert call.headers["authorization"] == f"Bearer {token}"
        assert "api-key" not in call.headers


async def test_check_lists_the_models_with_the_token(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    source = open_source(entra_source(provider, identity, tls))
    try:
        said = await source.check()
    finally:
        await source.aclose()

    assert said.startswith("listed 1 model(s)")
    (call,) = provider.requests
    assert (call.method, call.path) == ("GET", "/openai/models")
    assert call.headers["authorization"] == f"Bearer {provider.provider.entra.issued[0]}"


async def test_a_wrong_client_secret_is_unauthenticated_not_retried_and_never_shown(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    wrong = "wrong-secret-9x~Zq2"
    failure = await chat_failure(entra_source(provider, identity, tls, secret=wrong))

    assert (failure.code, failure.retryable) == ("provider.unauthenticated", False)
    assert "AADSTS7000215" in failure.message  # Entra ID's "Invalid client secret provided"
    assert wrong not in str(failure)
    assert SECRET not in str(failure)
    assert provider.requests == []  # no token: Azure OpenAI is not called


async def test_an_unknown_application_is_unauthenticated(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    other = entra_source(provider, identity, tls, client_id="00000000-0000-0000-0000-000000000001")
    failure = await chat_failure(other)

    assert (failure.code, failure.retryable) == ("provider.unauthenticated", False)
    assert "AADSTS700016" in failure.message


async def test_an_unreachable_identity_platform_is_unavailable_and_retryable(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    unreachable = f"https://127.0.0.1:{closed_port()}"
    failure = await chat_failure(entra_source(provider, identity, tls, authority_host=unreachable))

    assert (failure.code, failure.retryable) == ("provider.unavailable", True)
    assert SECRET not in str(failure)
    assert provider.requests == []


async def test_an_identity_platform_whose_certificate_is_not_trusted_is_refused(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    untrusted = entra_source(provider, identity, tls, ca_certificates=local_tls().ca_pem)
    failure = await chat_failure(untrusted)

    assert failure.code == "provider.unavailable"  # the TLS handshake fails: no token asked
    assert provider.provider.entra.token_requests == []


async def test_without_a_client_secret_the_identity_the_server_runs_as_signs_in(
    provider: FakeProviderServer,
    identity: FakeProviderServer,
    tls: LocalTls,
    app: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No `client_secret`: DefaultAzureCredential, here its environment credential (the AZURE_*
    variables a service principal is given by), through the source's authority and CAs."""
    for name in ("AZURE_TOKEN_CREDENTIALS", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    definition = entra_source(provider, identity, tls, secret=None, tenant_id=None, client_id=None)

    await chat(definition, "hi")

    (token,) = provider.provider.entra.issued
    assert provider.requests[0].headers["authorization"] == f"Bearer {token}"


async def test_the_server_s_own_identity_is_refused_unless_the_server_allows_it(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls
) -> None:
    definition = entra_source(provider, identity, tls, secret=None, tenant_id=None, client_id=None)
    with pytest.raises(SourceConfigError) as caught:
        open_source(definition, server_identity=False)
    assert caught.value.code == "source.invalid_config"
    assert "client_secret" in caught.value.message
    assert "AGENTFLOW_AZURE_SERVER_IDENTITY" in caught.value.message
    # The default registry (a server's, unless its settings say otherwise) refuses it too.
    with pytest.raises(SourceConfigError):
        SourceRegistry.default(metrics=UNRECORDED).open(definition)
    # A service principal needs no such leave.
    with_secret = entra_source(provider, identity, tls)
    await open_source(with_secret, server_identity=False).aclose()


async def test_closing_the_source_closes_its_identity_platform_connections(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    port = urlsplit(identity.url).port

    def connections() -> int:
        return sum(
            1
            for connection in psutil.Process().net_connections("tcp")
            if connection.raddr
            and connection.raddr.port == port
            and connection.status == psutil.CONN_ESTABLISHED
        )

    before = connections()
    source = open_source(entra_source(provider, identity, tls))
    try:
        await source.chat(ChatRequest([{"role": "user", "content": "hi"}]), lambda _: None)
        assert connections() > before
    finally:
        await source.aclose()
    await source.aclose()  # idempotent
    assert connections() <= before


def test_msal_signs_in_against_the_fake_identity_platform(
    provider: FakeProviderServer,
    identity: FakeProviderServer,
    tls: LocalTls,
    app: None,
    tmp_path: Path,
) -> None:
    """The fake speaks the platform's protocol as Microsoft's own library expects it: OpenID
    Connect discovery, then the client credentials grant."""
    ca = tmp_path / "ca.pem"
    ca.write_text(tls.ca_pem)
    with requests.Session() as session:
        session.trust_env = False  # else REQUESTS_CA_BUNDLE, when set, wins over `verify`
        session.verify = str(ca)
        msal_app = msal.ConfidentialClientApplication(
            CLIENT,
            client_credential=SECRET,
            authority=f"{identity.url}/{TENANT}",
            instance_discovery=False,  # Microsoft's own hosts are the only ones it would ask
            http_client=session,
        )
        result = msal_app.acquire_token_for_client(scopes=[f"{COGNITIVE_SERVICES}/.default"])

    assert result.get("token_type") == "Bearer", result
    assert result["access_token"] in provider.provider.entra.issued


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Access denied due to invalid subscription key"),
        ("Bearer not-a-token-it-issued", "Access token is missing, invalid"),
    ],
)
async def test_the_fake_refuses_azure_calls_without_a_good_credential_as_azure_does(
    provider: FakeProviderServer, authorization: str | None, message: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            f"{provider.url}/openai/deployments/gpt-4o/chat/completions",
            params={"api-version": API_VERSION},
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
        )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "401"
    assert message in error["message"]


async def test_the_fake_refuses_a_token_for_another_audience(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    async with httpx2.AsyncClient(verify=tls_context(tls)) as client:
        issued = await client.post(
            f"{identity.url}/{TENANT}/oauth2/v2.0/token",
            data={
                "client_id": CLIENT,
                "client_secret": SECRET,
                "grant_type": "client_credentials",
                "scope": "https://storage.azure.com/.default",
            },
        )
        token = issued.json()["access_token"]
        response = await client.get(
            f"{provider.url}/openai/models",
            params={"api-version": API_VERSION},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert issued.json()["token_type"] == "Bearer"
    assert response.status_code == 401
    assert "audience is incorrect" in response.json()["error"]["message"]


@dataclass
class BusyPlatform:
    url: str
    answers: list[tuple[int, str | None]]  # (status, Retry-After) of the next token requests
    delay: float = 0.0  # seconds before answering


@pytest.fixture
async def busy_identity_platform(tls: LocalTls) -> AsyncIterator[BusyPlatform]:
    """An identity platform that refuses token requests as a throttled or failing Entra ID
    does (the fake Entra ID always answers a registered application), in its error shape."""
    platform = BusyPlatform("", [])

    async def token(request: web.Request) -> web.Response:
        await asyncio.sleep(platform.delay)
        status, retry_after = platform.answers.pop(0)
        body = {
            "error": "temporarily_unavailable",
            "error_description": "AADSTS50196: The server terminated an operation because it "
            "encountered a client request loop.",
            "error_codes": [50196],
        }
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return web.json_response(body, status=status, headers=headers)

    application = web.Application()
    application.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    runner = web.AppRunner(application, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context()).start()
    platform.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield platform
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "retry_after", "code", "wait"),
    [
        (429, "7", "provider.rate_limited", 7.0),
        (503, None, "provider.unavailable", None),
    ],
)
async def test_a_throttled_or_failing_identity_platform_is_retryable(
    provider: FakeProviderServer,
    identity: FakeProviderServer,
    tls: LocalTls,
    busy_identity_platform: BusyPlatform,
    status: int,
    retry_after: str | None,
    code: str,
    wait: float | None,
) -> None:
    busy_identity_platform.answers.append((status, retry_after))
    definition = entra_source(provider, identity, tls, authority_host=busy_identity_platform.url)
    failure = await chat_failure(definition)

    assert (failure.code, failure.retryable, failure.retry_after) == (code, True, wait)
    assert "AADSTS50196" in failure.message
    assert busy_identity_platform.answers == []  # asked once: azure-identity's retries are off
    assert provider.requests == []


async def test_a_slow_identity_platform_times_out_and_may_be_retried(
    provider: FakeProviderServer,
    identity: FakeProviderServer,
    tls: LocalTls,
    busy_identity_platform: BusyPlatform,
) -> None:
    busy_identity_platform.answers.append((503, None))
    busy_identity_platform.delay = 3
    definition = entra_source(
        provider, identity, tls, authority_host=busy_identity_platform.url, timeout=0.3
    )
    failure = await chat_failure(definition)

    assert (failure.code, failure.retryable) == ("provider.timeout", True)


async def test_an_https_endpoint_is_verified_against_the_source_s_certificate_authorities(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls
) -> None:
    """`identity` is the fake over https: as an Azure OpenAI endpoint signed by a private CA."""
    trusted = api_key_source(
        provider, azure_endpoint=identity.url, ca_certificates=tls.ca_pem, model="gpt-4o"
    )
    assert (await chat(trusted, "hi")).text == "Echo: hi"

    failure = await chat_failure(api_key_source(provider, azure_endpoint=identity.url, model="m"))
    assert (failure.code, failure.retryable) == ("provider.unavailable", True)
    assert len(provider.requests) == 1


# --- deployments ---


async def test_two_nodes_naming_two_models_reach_two_deployments(
    engine: ExecutionEngine, provider: FakeProviderServer
) -> None:
    source = api_key_source(
        provider, model="gpt-4o", deployments={"gpt-4o": "chat-prod", "gpt-4o-mini": "chat-mini"}
    )
    document = {
        "api_version": "agentflow/v1",
        "name": "two-models",
        "inputs": {},
        "outputs": {
            "big": {"from": "nodes.big.output"},
            "small": {"from": "nodes.small.output"},
        },
        "nodes": [
            {"id": "start", "type": "input"},
            {"id": "big", "type": "llm", "source": "azure", "config": {"prompt": "one"}},
            {
                "id": "small",
                "type": "llm",
                "source": "azure",
                "config": {"prompt": "two", "model": "gpt-4o-mini"},
            },
        ],
        "edges": [{"from": "start", "to": "big"}, {"from": "big", "to": "small"}],
    }
    events = await run_document(engine, document, [source])

    assert [call.path for call in provider.requests] == [
        "/openai/deployments/chat-prod/chat/completions",
        "/openai/deployments/chat-mini/chat/completions",
    ]
    assert [call.body["model"] for call in provider.requests] == ["chat-prod", "chat-mini"]
    assert output_of(events, "big")["text"] == "Echo: one"
    (completed,) = of_type(for_node(events, "small"), EventType.NODE_COMPLETED)
    assert completed.data["usage"]["prompt_tokens"] > 0


async def test_a_model_without_a_deployment_entry_is_its_own_deployment(
    provider: FakeProviderServer,
) -> None:
    result = await chat(
        api_key_source(provider, deployments={"gpt-4o": "chat-prod"}), "hi", model="o3-mini"
    )

    assert result.model == "o3-mini"
    (call,) = provider.requests
    assert call.path == "/openai/deployments/o3-mini/chat/completions"
    assert call.headers["api-key"] == "azure-key-2b8e"


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    installed = spans.install(tracer_provider, content=False)
    yield exporter
    installed.uninstall()
    tracer_provider.shutdown()


async def test_the_span_names_the_model_asked_for_and_the_model_that_answered(
    provider: FakeProviderServer, recorded: InMemorySpanExporter
) -> None:
    await chat(api_key_source(provider, model="gpt-4o", deployments={"gpt-4o": "chat-prod"}), "hi")

    (span,) = recorded.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "chat gpt-4o"
    assert attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.response.model"] == "chat-prod"


# --- images through the same source ---


async def test_images_go_to_the_image_model_s_deployment(
    provider: FakeProviderServer, identity: FakeProviderServer, tls: LocalTls, app: None
) -> None:
    definition = entra_source(
        provider, identity, tls, image_model="dall-e-3", deployments={"dall-e-3": "images-prod"}
    )
    source = open_source(definition)
    try:
        result = await source.generate_images(
            ImageRequest(
                prompt="a lamp", model=None, size="1024x1024", n=2, quality="hd", output="b64_json"
            )
        )
    finally:
        await source.aclose()

    assert len(result.images) == 2
    assert all(image["b64_json"] for image in result.images)
    assert result.model == "dall-e-3"
    (call,) = provider.requests
    assert call.path == "/openai/deployments/images-prod/images/generations"
    assert call.body["model"] == "images-prod"
    assert (call.body["n"], call.body["quality"]) == (2, "hd")
    assert call.headers["authorization"] == f"Bearer {provider.provider.entra.issued[0]}"


# --- config ---


def refusal(definition: SourceDefinition) -> str:
    with pytest.raises(SourceConfigError) as caught:
        open_source(definition)
    assert caught.value.code == "source.invalid_config"
    return caught.value.message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"tenant_id": None}, "config.tenant_id"),
        ({"client_id": None}, "config.client_id"),
        ({"tenant_id": "no/tenant"}, "config.tenant_id"),
        ({"auth": "kerberos"}, "config.auth"),
        ({"authority_host": "http://login.example"}, "config.authority_host"),
        ({"ca_certificates": "not a certificate"}, "config.ca_certificates"),
        ({"token_scope": "https://cognitiveservices.azure.com"}, "config.token_scope"),
        ({"deployments": {"gpt-4o": "chat/prod"}}, "config.deployments"),
        ({"azure_endpoint": "ftp://azure.example"}, "config.azure_endpoint"),
    ],
)
def test_a_bad_entra_id_config_is_refused_naming_the_field(
    provider: FakeProviderServer,
    identity: FakeProviderServer,
    tls: LocalTls,
    changes: dict[str, Any],
    named: str,
) -> None:
    definition = entra_source(provider, identity, tls)
    config = {k: v for k, v in {**definition.config, **changes}.items() if v is not None}
    message = refusal(definition.model_copy(update={"config": config}))

    assert named in message
    assert SECRET not in message


def test_api_key_auth_without_the_api_key_secret_is_refused_naming_it(
    provider: FakeProviderServer,
) -> None:
    definition = api_key_source(provider).model_copy(update={"secrets": {}})
    assert "`api_key`" in refusal(definition)


async def test_a_stored_api_key_config_works_unchanged(provider: FakeProviderServer) -> None:
    """What azure_openai sources were stored with before Entra ID and deployments."""
    stored = {
        "azure_endpoint": provider.url,
        "api_version": "2024-06-01",
        "model": "gpt-4o",
        "image_model": "dall-e-3",
        "organization": "org-1",
        "timeout": 30,
        "default_headers": {"x-team": "a"},
        "limits": {"requests_per_minute": 60},
    }
    definition = SourceDefinition(
        name="azure", type="azure_openai", config=stored, secrets={"api_key": "k"}
    )
    result = await chat(definition, "hi")

    assert result.text == "Echo: hi"
    (call,) = provider.requests
    assert call.path == "/openai/deployments/gpt-4o/chat/completions"
    assert call.headers["api-key"] == "k"
    assert call.headers["openai-organization"] == "org-1"
