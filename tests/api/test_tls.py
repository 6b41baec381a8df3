"""The gRPC server on TLS and mutual TLS (api/tls.py): who gets in, who is refused and how, and
a certificate rotated while a client streams."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import client_of

from agentflow_grpc._gen.agentflow.v1 import workflow_pb2
from agentflow_grpc.api.tls import ReloadingServerTls, is_loopback, server_tls
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.tls.authority import CertificateAuthority, Issued

pytestmark = pytest.mark.integration

SERVER_NAMES = ("localhost", "127.0.0.1")


def _write(path: Path, data: bytes) -> Path:
    """Replace `path` whole (a rename), as a certificate manager does."""
    staged = path.with_suffix(".new")
    staged.write_bytes(data)
    os.replace(staged, path)
    return path


@dataclass
class Files:
    directory: Path
    ca: CertificateAuthority

    @property
    def cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key(self) -> Path:
        return self.directory / "server-key.pem"

    @property
    def client_ca(self) -> Path:
        return self.directory / "client-ca.pem"

    def install(self, issued: Issued) -> None:
        _write(self.cert, issued.cert_pem)
        _write(self.key, issued.key_pem)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    ca = CertificateAuthority.create("test server CA")
    found = Files(tmp_path, ca)
    found.install(ca.issue_server(SERVER_NAMES))
    _write(found.client_ca, ca.cert_pem)
    return found


def _channel(
    address: str, ca: CertificateAuthority, client: Issued | None = None
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem,
        private_key=None if client is None else client.key_pem,
        certificate_chain=None if client is None else client.cert_pem,
    )
    return grpc.aio.secure_channel(address, credentials)


async def _list(channel: grpc.aio.Channel, api: RunningApi) -> int:
    async with channel:
        reply = await client_of(channel).workflows.ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(), metadata=api.metadata(), timeout=10
        )
    return len(reply.workflows)


async def _refused(channel: grpc.aio.Channel, api: RunningApi) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list(channel, api)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    return caught.value


@pytest.fixture
async def tls_api(
    migrated_dsn: str, redis_url: str, owner: object, files: Files
) -> AsyncIterator[RunningApi]:
    tls = ReloadingServerTls(files.cert, files.key)
    async with running_api(api_settings(migrated_dsn, redis_url), tls) as running:
        yield running


@pytest.fixture
async def mtls_api(
    migrated_dsn: str, redis_url: str, owner: object, files: Files
) -> AsyncIterator[RunningApi]:
    tls = ReloadingServerTls(files.cert, files.key, files.client_ca)
    async with running_api(api_settings(migrated_dsn, redis_url), tls) as running:
        yield running


async def test_a_client_trusting_the_servers_authority_calls_over_tls(
    tls_api: RunningApi, files: Files
) -> None:
    assert await _list(_channel(tls_api.address, files.ca), tls_api) == 0


async def test_a_client_trusting_another_authority_or_speaking_plain_text_is_refused(
    tls_api: RunningApi,
) -> None:
    stranger = CertificateAuthority.create("another CA")
    error = await _refused(_channel(tls_api.address, stranger), tls_api)
    assert (
        "certificate verify failed" in (error.details() or "").lower()
        or "handshake" in (error.details() or "").lower()
    ), error.details()
    await _refused(grpc.aio.insecure_channel(tls_api.address), tls_api)


async def test_mutual_tls_lets_in_a_client_certificate_of_the_client_authority_only(
    mtls_api: RunningApi, files: Files
) -> None:
    good = files.ca.issue_client("envoy")
    assert await _list(_channel(mtls_api.address, files.ca, good), mtls_api) == 0

    await _refused(_channel(mtls_api.address, files.ca), mtls_api)  # no client certificate
    other = CertificateAuthority.create("another CA").issue_client("intruder")
    await _refused(_channel(mtls_api.address, files.ca, other), mtls_api)
    expired = files.ca.issue_client(
        "envoy", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), valid_for=dt.timedelta(days=1)
    )
    await _refused(_channel(mtls_api.address, files.ca, expired), mtls_api)


async def test_a_rotated_certificate_serves_new_connections_while_a_stream_goes_on(
    tls_api: RunningApi, files: Files
) -> None:
    old_ca = files.ca
    async with _channel(tls_api.address, old_ca) as streaming:
        watch = health_pb2_grpc.HealthStub(streaming).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING

        new_ca = CertificateAuthority.create("rotated CA")
        files.install(new_ca.issue_server(SERVER_NAMES))

        assert await _list(_channel(tls_api.address, new_ca), tls_api) == 0
        await _refused(_channel(tls_api.address, old_ca), tls_api)

        # The stream opened before the rotation still carries messages.
        await tls_api.server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        second = await asyncio.wait_for(watch.read(), 10)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()


async def test_a_broken_rotation_is_logged_and_the_certificate_in_use_stays(
    tls_api: RunningApi, files: Files
) -> None:
    other_key = files.ca.issue_server(SERVER_NAMES).key_pem
    _write(files.key, other_key)  # half a rotation: the key of another certificate
    assert await _list(_channel(tls_api.address, files.ca), tls_api) == 0


def test_a_server_certificate_out_of_date_or_a_stray_key_is_refused_at_start(
    files: Files,
) -> None:
    files.install(
        files.ca.issue_server(
            SERVER_NAMES,
            now=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
            valid_for=dt.timedelta(days=1),
        )
    )
    with pytest.raises(ConfigurationError, match=r"AGENTFLOW_TLS_CERT_FILE: .* not now"):
        ReloadingServerTls(files.cert, files.key).credentials()

    files.install(files.ca.issue_server(SERVER_NAMES))
    _write(files.key, files.ca.issue_server(SERVER_NAMES).key_pem)
    with pytest.raises(ConfigurationError, match=r"AGENTFLOW_TLS_KEY_FILE: .* does not belong"):
        ReloadingServerTls(files.cert, files.key).credentials()

    _write(files.client_ca, b"not a certificate")
    files.install(files.ca.issue_server(SERVER_NAMES))
    with pytest.raises(ConfigurationError, match=r"AGENTFLOW_TLS_CLIENT_CA_FILE: .* no PEM"):
        ReloadingServerTls(files.cert, files.key, files.client_ca).credentials()


def test_plain_text_is_the_default_on_loopback_only(files: Files) -> None:
    assert all(map(is_loopback, ("127.0.0.1", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "api.example.com")))

    plain = Settings(home=files.directory)
    assert server_tls(plain, "127.0.0.1") is None
    with pytest.raises(ConfigurationError, match=r"without TLS.*AGENTFLOW_ALLOW_PLAINTEXT"):
        server_tls(plain, "0.0.0.0")
    assert server_tls(Settings(home=files.directory, allow_plaintext=True), "0.0.0.0") is None

    secured = Settings(home=files.directory, tls_cert_file=files.cert, tls_key_file=files.key)
    found = server_tls(secured, "0.0.0.0")
    assert found is not None
    assert found.client_ca_file is None


def test_a_certificate_without_its_key_is_a_configuration_error(files: Files) -> None:
    with pytest.raises(ValueError, match="TLS_CERT_FILE and AGENTFLOW_TLS_KEY_FILE go together"):
        Settings(home=files.directory, tls_cert_file=files.cert)
    with pytest.raises(ValueError, match="TLS_CLIENT_CA_FILE needs"):
        Settings(home=files.directory, tls_client_ca_file=files.client_ca)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_serve_refuses_a_public_address_without_tls_and_says_how(
    tmp_path: Path, processes: str
) -> None:
    from click.testing import CliRunner

    from agentflow_grpc.cli import cli

    result = CliRunner().invoke(
        cli,
        ["serve", "--host", "0.0.0.0", "--port", "0", "--processes", processes],
        env={"AGENTFLOW_HOME": str(tmp_path), "AGENTFLOW_METRICS_PORT": "-1"},
    )
    assert result.exit_code == 2, result.output
    assert "would listen on 0.0.0.0 without TLS" in result.output
    assert "AGENTFLOW_TLS_CERT_FILE" in result.output
    assert "--allow-plaintext" in result.output
    assert not (tmp_path / "postgres").exists(), "it started something before refusing"
