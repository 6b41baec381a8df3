"""People and services signed in through a real OpenID Provider (the oidc-provider npm package,
tests/support/oidc.py), calling the gRPC API with its access tokens: mapped to tenant and role,
refused with the reason, recorded in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from support.api_fixtures import RunningApi, running_api
from support.api_helpers import Client, client_of, rpc_error
from support.oidc import AUDIENCE, OTHER_AUDIENCE, PAGE_CLIENT, PAGE_REDIRECT, OpenIdProvider
from support.oidc_fixtures import oidc_api_settings

from agentflow_grpc._gen.agentflow.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
)
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
async def oidc_api(
    migrated_dsn: str, redis_url: str, owner: object, openid_provider: OpenIdProvider
) -> AsyncIterator[RunningApi]:
    async with running_api(oidc_api_settings(migrated_dsn, redis_url, openid_provider)) as running:
        yield running


@pytest.fixture
async def oidc_client(oidc_api: RunningApi) -> AsyncIterator[Client]:
    async with oidc_api.channel() as channel:
        yield client_of(channel)


async def caller(client: Client, metadata: Any) -> identity_pb2.Caller:
    stub = identity_pb2_grpc.IdentityServiceStub(client.channel)
    return await stub.GetCaller(identity_pb2.GetCallerRequest(), metadata=metadata)  # type: ignore[no-any-return]


async def test_a_services_token_is_its_tenant_and_strongest_role(
    oidc_client: Client, openid_provider: OpenIdProvider
) -> None:
    token = await openid_provider.token("admin-service")
    who = await caller(oidc_client, bearer(token))
    assert (who.tenant, who.role) == ("acme", "admin")
    assert who.actor == f"oidc:{openid_provider.issuer}#admin-service"
    assert who.HasField("expire_time")
    admin = admin_pb2_grpc.AdminServiceStub(oidc_client.channel)
    keys = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=bearer(token))
    assert len(keys.api_keys) >= 4  # the fixture's keys of tenant acme


async def test_a_token_without_a_tenant_claim_gets_the_default_tenant_and_its_role_only(
    oidc_client: Client, openid_provider: OpenIdProvider
) -> None:
    token = await openid_provider.token("viewer-service")
    who = await caller(oidc_client, bearer(token))
    assert (who.tenant, who.role) == ("acme", "viewer")
    listed = await oidc_client.workflows.ListWorkflows(
        wf.ListWorkflowsRequest(), metadata=bearer(token)
    )
    assert list(listed.workflows) == []
    error = await rpc_error(
        oidc_client.workflows.CreateWorkflow(wf.CreateWorkflowRequest(), metadata=bearer(token))
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "editor" in (error.details() or "")


async def test_a_person_signed_in_through_the_page_client_calls_the_api(
    oidc_client: Client, openid_provider: OpenIdProvider
) -> None:
    token = await openid_provider.sign_in("ada", redirect_uri=PAGE_REDIRECT)
    who = await caller(oidc_client, bearer(token))
    assert (who.tenant, who.role) == ("acme", "runner")
    assert who.actor.endswith("#ada")


@pytest.mark.parametrize(
    ("how", "code", "reason"),
    [
        ("expired", grpc.StatusCode.UNAUTHENTICATED, "expired"),
        ("wrong-audience", grpc.StatusCode.UNAUTHENTICATED, "audience"),
        ("no-role", grpc.StatusCode.PERMISSION_DENIED, "no role"),
        ("tampered", grpc.StatusCode.UNAUTHENTICATED, "signature"),
        ("not-a-token", grpc.StatusCode.UNAUTHENTICATED, "malformed"),
    ],
)
async def test_refused_tokens_say_why(
    oidc_client: Client, openid_provider: OpenIdProvider, how: str, code: Any, reason: str
) -> None:
    if how == "expired":
        token = await openid_provider.token("admin-service", clock_offset=-7200)
    elif how == "wrong-audience":
        token = await openid_provider.token("admin-service", resource=OTHER_AUDIENCE)
    elif how == "no-role":
        token = await openid_provider.token("stranger-service")
    elif how == "tampered":
        header, claims, signature = (await openid_provider.token("viewer-service")).split(".")
        token = f"{header}.{claims}.{signature[:-4]}AAAA"
    else:
        token = "not-a-jwt-and-not-a-key"
    error = await rpc_error(caller(oidc_client, bearer(token)))
    assert error.code() is code
    assert reason in (error.details() or "")
    assert token not in (error.details() or "")


async def test_sign_ins_and_refused_tokens_are_in_the_audit_log(
    oidc_api: RunningApi, oidc_client: Client, openid_provider: OpenIdProvider
) -> None:
    token = await openid_provider.token("admin-service")
    await caller(oidc_client, bearer(token))
    await caller(oidc_client, bearer(token))  # the same token again: one sign-in
    refused = await openid_provider.token("stranger-service")
    await rpc_error(caller(oidc_client, bearer(refused)))
    admin = admin_pb2_grpc.AdminServiceStub(oidc_client.channel)
    events = (
        await admin.ListAuditEvents(
            admin_pb2.ListAuditEventsRequest(action="auth.sign_in"), metadata=bearer(token)
        )
    ).audit_events
    assert [event.actor for event in events] == [f"oidc:{openid_provider.issuer}#admin-service"]
    assert events[0].outcome == "ok"
    assert events[0].request_id
    audit = oidc_api.server.app.audit
    system, _ = await audit.list_events(None, action="auth.refused")
    assert any(event.outcome == "oidc.no_role" for event in system), system


async def test_the_sign_in_config_names_the_issuer_and_the_page_client(
    oidc_client: Client, openid_provider: OpenIdProvider
) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(oidc_client.channel)
    config = await stub.GetSignInConfig(identity_pb2.GetSignInConfigRequest())
    assert config.enabled
    assert (config.issuer, config.client_id, config.audience) == (
        openid_provider.issuer,
        PAGE_CLIENT,
        AUDIENCE,
    )
    assert "openid" in config.scopes.split()
