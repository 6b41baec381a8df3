"""Every source adapter the default registry knows passes the conformance suite
(tests/support/conformance.py), each against a real local server: the OpenAI-compatible types
against the fake provider, `postgres` against the embedded PostgreSQL, `mysql` against a
MariaDB started for the session, `http` against the CRM API.

A new source type (Anthropic's own API, Gemini's, MySQL…) joins with a class here; until it does,
`test_every_registered_source_type_has_a_conformance_case` fails for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import urlsplit

import asyncpg
import psutil
import pytest
from support.conformance import (
    CAPABILITY_BY_NODE_TYPE,
    Case,
    ChatModelConformance,
    DatabaseConformance,
    HttpApiConformance,
    ImageModelConformance,
    SourceConformance,
    promised_capabilities,
)
from support.crm_api import CrmApi
from support.mariadb import mysql_source
from support.network import closed_port
from support.sources import crm_source
from support.tls import local_tls
from support.webhook_receiver import WebhookReceiver, new_secret, webhook_receiver

from agentflow_grpc.devstack.mariadb import MariaDBEndpoint
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.base import ChatModel, Checkable, Database, HttpApi, ImageModel
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.spec.checks.references import SOURCE_TYPES_BY_NODE_TYPE
from agentflow_grpc.testing import FakeProviderServer

API_KEY = "sk-conformance-8d2f61"
DB_PASSWORD = "pg-conformance-5e0b9c"
TOKEN = "crm-conformance-41a7d3"
PROBE = "conformance-probe"  # the application_name of the connection that counts the others


def tcp_connections_to(url: str) -> Callable[[], Awaitable[int]]:
    """Established TCP connections from this process to the server at `url`."""
    port = urlsplit(url).port

    async def count() -> int:
        return sum(
            1
            for connection in psutil.Process().net_connections("tcp")
            if connection.raddr
            and connection.raddr.port == port
            and connection.status == psutil.CONN_ESTABLISHED
        )

    return count


def postgres_sessions(dsn: str) -> Callable[[], Awaitable[int]]:
    """Server sessions in the database of `dsn`, this probe's own not counted."""

    async def count() -> int:
        probe = await asyncpg.connect(dsn, server_settings={"application_name": PROBE})
        try:
            found: int = await probe.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name <> $1",
                PROBE,
            )
            return found
        finally:
            await probe.close()

    return count


# --- the OpenAI-compatible types, against the fake provider ---


def fail_next_call(provider: FakeProviderServer, status: int) -> None:
    provider.add_rule(status=status, times=1)


def openai_compatible_case(type_name: str, provider: FakeProviderServer) -> Case:
    models = {"model": "fake-model", "image_model": "fake-image"}
    secrets = {"api_key": API_KEY}
    bad_configs: list[tuple[dict[str, object], str]] = [
        ({"timeout": 0}, "timeout"),
        ({"modle": "fake-model"}, "modle"),
        ({"limits": {"rpm": 10}}, "limits.rpm"),
    ]
    if type_name == "azure_openai":
        azure = {"api_version": "2024-06-01", **models}
        definition = SourceDefinition(
            name="conformance",
            type=type_name,
            config={"azure_endpoint": provider.url, **azure},
            secrets=secrets,
        )
        unreachable_config = {"azure_endpoint": f"http://127.0.0.1:{closed_port()}", **azure}
        bad_configs += [({"azure_endpoint": None}, "azure_endpoint")]
        bad_configs += [({"api_version": None}, "api_version")]
    else:
        definition = SourceDefinition(
            name="conformance",
            type=type_name,
            config={"base_url": f"{provider.url}/v1", **models},
            secrets=secrets,
        )
        unreachable_config = {"base_url": f"http://127.0.0.1:{closed_port()}/v1", **models}
    return Case(
        definition=definition,
        unreachable=definition.model_copy(update={"config": unreachable_config}),
        unreachable_code="provider.unavailable",
        bad_configs=bad_configs,
        required_secrets=["api_key"],
        connections=tcp_connections_to(provider.url),
        reply=lambda prompt: f"Echo: {prompt}",
        fail_next_call=lambda status: fail_next_call(provider, status),
        fake=provider.provider,
    )


ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENTRA_CLIENT = "0c7d1b2a-5e4f-4a3b-9c8d-7e6f5a4b3c2d"
ENTRA_SECRET = "entra-conformance-3Kq~9f1b"


@pytest.fixture(scope="module")
def identity_platform(fake_provider: FakeProviderServer) -> Iterator[tuple[str, str]]:
    """The fake provider over https too, as Microsoft Entra ID (azure-identity takes no
    authority but an https one): its URL, and the PEM of the authority that signed its
    certificate (the source trusts it through `ca_certificates`)."""
    tls = local_tls()
    with FakeProviderServer(fake_provider.provider, ssl_context=tls.server_context()) as server:
        yield server.url, tls.ca_pem


def azure_entra_id_case(provider: FakeProviderServer, authority: str, ca_pem: str) -> Case:
    """azure_openai signed in with Microsoft Entra ID (a service principal's client secret):
    the fake's identity platform issues the token, its Azure paths take it."""
    provider.provider.entra.register_app(ENTRA_TENANT, ENTRA_CLIENT, ENTRA_SECRET)
    config = {
        "api_version": "2024-10-21",
        "model": "fake-model",
        "image_model": "fake-image",
        "auth": "entra_id",
        "tenant_id": ENTRA_TENANT,
        "client_id": ENTRA_CLIENT,
        "authority_host": authority,
        "ca_certificates": ca_pem,
    }
    definition = SourceDefinition(
        name="conformance",
        type="azure_openai",
        config={"azure_endpoint": provider.url, **config},
        secrets={"client_secret": ENTRA_SECRET},
    )
    unreachable = {"azure_endpoint": f"http://127.0.0.1:{closed_port()}", **config}
    return Case(
        definition=definition,
        unreachable=definition.model_copy(update={"config": unreachable}),
        unreachable_code="provider.unavailable",
        bad_configs=[
            ({"timeout": 0}, "timeout"),
            ({"tenant_id": None}, "tenant_id"),  # a client secret is a service principal's
            ({"client_id": None}, "client_id"),
            ({"auth": "kerberos"}, "auth"),
            ({"authority_host": "http://login.example"}, "authority_host"),
            ({"ca_certificates": "not PEM"}, "ca_certificates"),
            ({"azure_endpoint": None}, "azure_endpoint"),
        ],
        # Without `client_secret` the source would sign in as the server's own identity, which
        # a server (and the default registry) allows only with AGENTFLOW_AZURE_SERVER_IDENTITY.
        required_secrets=["client_secret"],
        connections=tcp_connections_to(provider.url),
        reply=lambda prompt: f"Echo: {prompt}",
        fail_next_call=lambda status: fail_next_call(provider, status),
        fake=provider.provider,
    )


# `check()` of an azure_openai source lists the models: GET {endpoint}/openai/models
# ?api-version=… (the fake serves Azure's list there). azure_openai runs twice: with an API key,
# and with Microsoft Entra ID (tests/sources/test_azure_openai.py has the rest of Entra ID).
class TestOpenAICompatibleChatAndImages(
    SourceConformance, ChatModelConformance, ImageModelConformance
):
    TYPES = ("openai", "azure_openai")

    @pytest.fixture(params=[*TYPES, "azure_openai+entra_id"])
    def case(self, request: pytest.FixtureRequest, provider: FakeProviderServer) -> Case:
        if request.param == "azure_openai+entra_id":
            authority, ca_pem = request.getfixturevalue("identity_platform")
            return azure_entra_id_case(provider, authority, ca_pem)
        return openai_compatible_case(request.param, provider)


# --- anthropic, against the fake provider's Messages API (Anthropic's own wire format) ---


class TestAnthropic(SourceConformance, ChatModelConformance):
    TYPES = ("anthropic",)

    @pytest.fixture
    def case(self, provider: FakeProviderServer) -> Case:
        definition = SourceDefinition(
            name="conformance",
            type="anthropic",
            config={"base_url": provider.url, "model": "fake-model"},
            secrets={"api_key": API_KEY},
        )
        unreachable = {"base_url": f"http://127.0.0.1:{closed_port()}", "model": "fake-model"}
        return Case(
            definition=definition,
            unreachable=definition.model_copy(update={"config": unreachable}),
            unreachable_code="provider.unavailable",
            bad_configs=[
                ({"timeout": 0}, "timeout"),
                ({"max_tokens": 0}, "max_tokens"),
                ({"prompt_cache": "2h"}, "prompt_cache"),
                ({"image_model": "fake-image"}, "image_model"),  # Anthropic makes no images
                ({"limits": {"rpm": 10}}, "limits.rpm"),
            ],
            required_secrets=["api_key"],
            connections=tcp_connections_to(provider.url),
            reply=lambda prompt: f"Echo: {prompt}",
            fail_next_call=lambda status: fail_next_call(provider, status),
            fake=provider.provider,
        )


# --- gemini, against the fake provider's Gemini API (Google's own wire format) ---


class TestGemini(SourceConformance, ChatModelConformance, ImageModelConformance):
    TYPES = ("gemini",)

    @pytest.fixture
    def case(self, provider: FakeProviderServer) -> Case:
        models = {"model": "fake-model", "image_model": "fake-image"}
        definition = SourceDefinition(
            name="conformance",
            type="gemini",
            config={"base_url": provider.url, **models},
            secrets={"api_key": API_KEY},
        )
        unreachable = {"base_url": f"http://127.0.0.1:{closed_port()}", **models}
        return Case(
            definition=definition,
            unreachable=definition.model_copy(update={"config": unreachable}),
            unreachable_code="provider.unavailable",
            bad_configs=[
                ({"timeout": 0}, "timeout"),
                ({"base_url": f"{provider.url}/v1beta/openai/"}, "base_url"),
                ({"api_version": "latest"}, "api_version"),
                ({"default_headers": {"X-Goog-Api-Key": "other"}}, "default_headers"),
                ({"organization": "org-1"}, "organization"),  # OpenAI's, not Gemini's
                ({"limits": {"rpm": 10}}, "limits.rpm"),
            ],
            required_secrets=["api_key"],
            connections=tcp_connections_to(provider.url),
            reply=lambda prompt: f"Echo: {prompt}",
            fail_next_call=lambda status: fail_next_call(provider, status),
            fake=provider.provider,
        )


# --- postgres, against the embedded PostgreSQL ---


class TestPostgres(SourceConformance, DatabaseConformance):
    TYPES = ("postgres",)

    @pytest.fixture
    def case(self, warehouse_dsn: str) -> Case:
        definition = SourceDefinition(
            name="conformance",
            type="postgres",
            config={"dsn": warehouse_dsn},
            secrets={"password": DB_PASSWORD},  # the embedded server trusts local connections
        )
        unreachable = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
        return Case(
            definition=definition,
            unreachable=definition.model_copy(
                update={"config": {"dsn": unreachable, "connect_timeout": 5}}
            ),
            unreachable_code="database.unavailable",
            bad_configs=[
                ({"dsn": None}, "dsn"),
                ({"max_pool_size": 0}, "max_pool_size"),
                ({"connect_timeout": 0}, "connect_timeout"),
                ({"colour": "red"}, "colour"),
            ],
            connections=postgres_sessions(warehouse_dsn),
            placeholder=lambda n: f"${n}",
            insert_note="INSERT INTO audit_log (note) VALUES ($1)",
            count_notes="SELECT count(*) AS n FROM audit_log WHERE note = $1",
            sleep_query="SELECT pg_sleep(5)",
            typed_row_query=(
                "SELECT 12.50::numeric(10, 2) AS price, 42::numeric(10, 2) AS whole, "
                "date '2024-05-06' AS day, timestamp '2024-05-06 07:08:09.123456' AS at, "
                "time '12:34:56' AS clock, "
                """'{"a": [1, 2.5, null], "b": "x"}'::jsonb AS doc, """
                r"'\x00ff10'::bytea AS raw, NULL AS nothing"
            ),
        )


# --- mysql, against the session's MariaDB (Debian's mariadb-server, tests/support/mariadb.py) ---


class TestMySQL(SourceConformance, DatabaseConformance):
    TYPES = ("mysql",)

    @pytest.fixture
    def case(self, mariadb: MariaDBEndpoint) -> Case:
        definition = mysql_source(mariadb, name="conformance")
        unreachable = f"mysql://{mariadb.user}@127.0.0.1:{closed_port()}/{mariadb.database}"
        return Case(
            definition=definition,
            unreachable=definition.model_copy(
                update={"config": {"dsn": unreachable, "connect_timeout": 5}}
            ),
            unreachable_code="database.unavailable",
            bad_configs=[
                ({"dsn": None}, "dsn"),
                ({"dsn": "postgresql://analyst@127.0.0.1/warehouse"}, "dsn"),
                ({"dsn": "mysql://analyst:hunter2@127.0.0.1/warehouse"}, "dsn"),  # secrets only
                ({"dsn": "mysql://127.0.0.1:3306/warehouse"}, "dsn"),  # no user
                ({"max_pool_size": 0}, "max_pool_size"),
                ({"connect_timeout": 0}, "connect_timeout"),
                ({"colour": "red"}, "colour"),
            ],
            connections=tcp_connections_to(f"mysql://{mariadb.host}:{mariadb.port}"),
            placeholder=lambda n: "?",
            insert_note="INSERT INTO audit_log (note) VALUES (?)",
            count_notes="SELECT count(*) AS n FROM audit_log WHERE note = ?",
            sleep_query="SELECT SLEEP(5)",
            typed_row_query=(
                "SELECT CAST(12.5 AS DECIMAL(10, 2)) AS price, "
                "CAST(42 AS DECIMAL(10, 2)) AS whole, DATE '2024-05-06' AS day, "
                "CAST('2024-05-06 07:08:09.123456' AS DATETIME(6)) AS at, "
                "TIME '12:34:56' AS clock, doc, raw, NULL AS nothing FROM documents WHERE id = 1"
            ),
        )


# --- http, against the CRM API ---


class TestHttpApi(SourceConformance, HttpApiConformance):
    TYPES = ("http",)

    @pytest.fixture
    def case(self, crm_api: tuple[str, CrmApi]) -> Case:
        url, _ = crm_api
        definition = SourceDefinition(
            name="conformance",
            type="http",
            config={"base_url": url, "allow_private_network": True},
            secrets={"token": TOKEN},
        )
        return Case(
            definition=definition,
            unreachable=crm_source(f"http://127.0.0.1:{closed_port()}", name="conformance"),
            unreachable_code="http.unavailable",
            bad_configs=[
                ({"base_url": "ftp://crm.example"}, "base_url"),
                ({"base_url": None}, "base_url"),
                ({"timeout": 0}, "timeout"),
                ({"colour": "red"}, "colour"),
            ],
            connections=tcp_connections_to(url),
        )


# --- webhook, against a local webhook receiver ---


class TestWebhook(SourceConformance):
    TYPES = ("webhook",)

    @pytest.fixture
    async def receiver(self) -> AsyncIterator[WebhookReceiver]:
        async with webhook_receiver() as receiver:
            yield receiver

    @pytest.fixture
    def case(self, receiver: WebhookReceiver) -> Case:
        definition = receiver.source(new_secret(), name="conformance")
        return Case(
            definition=definition,
            unreachable=definition.model_copy(
                update={
                    "config": {
                        "url": f"http://127.0.0.1:{closed_port()}/hook",
                        "allow_private_network": True,
                    }
                }
            ),
            unreachable_code="webhook.unavailable",
            bad_configs=[
                ({"url": "ftp://hooks.example"}, "url"),
                ({"url": None}, "url"),
                ({"timeout": 0}, "timeout"),
                ({"colour": "red"}, "colour"),
            ],
            required_secrets=["secret"],
            connections=tcp_connections_to(receiver.url),
        )


# --- every type has a case, and every case runs the suites its type promises ---

CLASSES: list[type[SourceConformance]] = [
    TestOpenAICompatibleChatAndImages,
    TestAnthropic,
    TestGemini,
    TestPostgres,
    TestMySQL,
    TestHttpApi,
    TestWebhook,
]
SUITES: dict[type, type] = {
    ChatModel: ChatModelConformance,
    ImageModel: ImageModelConformance,
    Database: DatabaseConformance,
    HttpApi: HttpApiConformance,
}


def test_this_module_lists_every_conformance_class() -> None:
    found = {
        value
        for value in globals().values()
        if isinstance(value, type) and issubclass(value, SourceConformance)
    }
    assert found - {SourceConformance} == set(CLASSES)


@pytest.mark.parametrize("type_name", SourceRegistry.default(metrics=Metrics()).types())
def test_every_registered_source_type_has_a_conformance_case(type_name: str) -> None:
    covering = [cls.__name__ for cls in CLASSES if type_name in cls.TYPES]
    assert len(covering) == 1, (
        f"source type {type_name!r} is registered but {covering or 'no class'} runs the "
        "conformance suite for it: add it to the TYPES of a class in this module"
    )


def test_every_conformance_case_is_a_registered_type() -> None:
    covered = {type_name for cls in CLASSES for type_name in cls.TYPES}
    assert covered <= set(SourceRegistry.default(metrics=Metrics()).types())


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_each_class_runs_the_suite_of_every_capability_its_types_promise(
    cls: type[SourceConformance],
) -> None:
    for type_name in cls.TYPES:
        promised = promised_capabilities(type_name) - {Checkable}
        runs = {capability for capability, suite in SUITES.items() if issubclass(cls, suite)}
        assert runs == promised, (type_name, runs, promised)


def test_every_node_type_that_takes_a_source_uses_one_capability() -> None:
    assert set(CAPABILITY_BY_NODE_TYPE) == set(SOURCE_TYPES_BY_NODE_TYPE)
    assert set(CAPABILITY_BY_NODE_TYPE.values()) == set(SUITES)
