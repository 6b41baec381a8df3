"""AdminService and IdentityService over a real server: API keys made, listed, revoked and rotated,
the tenant's own limits, the audit log of what was done and refused; bad input with field paths."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from support.api_fixtures import RunningApi
from support.api_helpers import (
    Client,
    assert_invalid,
    create_workflow,
    echo_spec,
    eventually,
    rpc_error,
    struct,
)

from agentflow_grpc._gen.agentflow.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
)
from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.model.records import Role


def key_md(secret: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", secret),)


@pytest.fixture
async def admin(client: Client) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(client.channel)


@pytest.fixture
async def identity(client: Client) -> identity_pb2_grpc.IdentityServiceStub:
    return identity_pb2_grpc.IdentityServiceStub(client.channel)


async def create_key(
    admin: admin_pb2_grpc.AdminServiceStub, md: Any, **fields: Any
) -> admin_pb2.CreateApiKeyResponse:
    return await admin.CreateApiKey(  # type: ignore[no-any-return]
        admin_pb2.CreateApiKeyRequest(api_key=admin_pb2.ApiKey(**fields)), metadata=md
    )


def in_(delta: timedelta) -> timestamp_pb2.Timestamp:
    moment = timestamp_pb2.Timestamp()
    moment.FromDatetime(datetime.now(UTC) + delta)
    return moment


async def test_a_key_is_made_shown_once_listed_without_its_secret_and_revoked_at_once(
    api: RunningApi,
    admin: admin_pb2_grpc.AdminServiceStub,
    identity: identity_pb2_grpc.IdentityServiceStub,
    md: Any,
) -> None:
    created = await create_key(
        admin, md, role="editor", description="deploy bot", expire_time=in_(timedelta(days=7))
    )
    assert created.secret.startswith("af_")
    assert created.api_key.state == admin_pb2.ApiKey.STATE_ACTIVE
    assert created.secret.startswith(created.api_key.prefix)

    caller = await identity.GetCaller(
        identity_pb2.GetCallerRequest(), metadata=key_md(created.secret)
    )
    assert (caller.tenant, caller.role) == ("acme", "editor")
    assert caller.actor == f"api_key:{created.api_key.name.removeprefix('apiKeys/')}"
    assert caller.HasField("expire_time")

    listed = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=md)
    mine = next(key for key in listed.api_keys if key.name == created.api_key.name)
    assert (mine.role, mine.description, mine.prefix) == (
        "editor",
        "deploy bot",
        created.api_key.prefix,
    )
    assert created.secret not in str(listed)
    assert len(listed.api_keys) == len(Role) + 1  # the fixture's four, and this one

    revoked = await admin.RevokeApiKey(
        admin_pb2.RevokeApiKeyRequest(name=created.api_key.name), metadata=md
    )
    assert revoked.state == admin_pb2.ApiKey.STATE_REVOKED
    assert revoked.HasField("revoke_time")
    error = await rpc_error(
        identity.GetCaller(identity_pb2.GetCallerRequest(), metadata=key_md(created.secret))
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    again = await admin.RevokeApiKey(
        admin_pb2.RevokeApiKeyRequest(name=created.api_key.name), metadata=md
    )
    assert again.revoke_time == revoked.revoke_time  # revoking twice changes nothing


async def test_a_rotated_key_gives_way_to_its_successor_after_the_grace_period(
    admin: admin_pb2_grpc.AdminServiceStub, identity: identity_pb2_grpc.IdentityServiceStub, md: Any
) -> None:
    old = await create_key(admin, md, role="runner", description="ci")
    grace = duration_pb2.Duration(seconds=2)
    rotated = await admin.RotateApiKey(
        admin_pb2.RotateApiKeyRequest(name=old.api_key.name, grace_period=grace), metadata=md
    )
    assert rotated.api_key.rotated_from == old.api_key.name
    assert (rotated.api_key.role, rotated.api_key.description) == ("runner", "ci")
    assert rotated.previous.HasField("expire_time")
    for secret in (old.secret, rotated.secret):  # both work during the grace period
        caller = await identity.GetCaller(identity_pb2.GetCallerRequest(), metadata=key_md(secret))
        assert caller.role == "runner"
    await asyncio.sleep(2.5)
    error = await rpc_error(
        identity.GetCaller(identity_pb2.GetCallerRequest(), metadata=key_md(old.secret))
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (error.details() or "")
    caller = await identity.GetCaller(
        identity_pb2.GetCallerRequest(), metadata=key_md(rotated.secret)
    )
    assert caller.role == "runner"
    listed = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=md)
    states = {key.name: key.state for key in listed.api_keys}
    assert states[old.api_key.name] == admin_pb2.ApiKey.STATE_EXPIRED


@pytest.mark.parametrize(
    ("api_key", "field"),
    [
        ({"role": "superuser"}, "api_key.role"),
        ({"role": ""}, "api_key.role"),
        ({"role": "viewer", "expire_time": in_(-timedelta(hours=1))}, "api_key.expire_time"),
        ({"role": "viewer", "workflows": ["sources/x"]}, "api_key.workflows[0]"),
        (
            {"role": "viewer", "workflows": ["workflows/00000000-0000-0000-0000-000000000001"]},
            "api_key.workflows",
        ),
    ],
    ids=["unknown-role", "no-role", "expired", "not-a-workflow", "unknown-workflow"],
)
async def test_bad_keys_are_refused_with_the_field_at_fault(
    admin: admin_pb2_grpc.AdminServiceStub, md: Any, api_key: dict[str, Any], field: str
) -> None:
    assert_invalid(await rpc_error(create_key(admin, md, **api_key)), field)


async def test_bad_rotations_and_revocations_are_clear(
    admin: admin_pb2_grpc.AdminServiceStub, md: Any
) -> None:
    made = await create_key(admin, md, role="viewer")
    too_long = duration_pb2.Duration(seconds=31 * 86_400)
    error = await rpc_error(
        admin.RotateApiKey(
            admin_pb2.RotateApiKeyRequest(name=made.api_key.name, grace_period=too_long),
            metadata=md,
        )
    )
    assert_invalid(error, "grace_period")
    for name in ("", "apiKeys/not-a-uuid", "workflows/00000000-0000-0000-0000-000000000001"):
        error = await rpc_error(
            admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(name=name), metadata=md)
        )
        assert_invalid(error, "name")
    await admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(name=made.api_key.name), metadata=md)
    error = await rpc_error(
        admin.RotateApiKey(admin_pb2.RotateApiKeyRequest(name=made.api_key.name), metadata=md)
    )
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_tenant_never_reaches_another_tenants_keys(
    api: RunningApi, admin: admin_pb2_grpc.AdminServiceStub, md: Any
) -> None:
    mine = await create_key(admin, md, role="viewer")
    other = key_md(api.other_tenant_key)
    for call in (
        admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(name=mine.api_key.name), metadata=other),
        admin.RotateApiKey(admin_pb2.RotateApiKeyRequest(name=mine.api_key.name), metadata=other),
    ):
        assert (await rpc_error(call)).code() is grpc.StatusCode.NOT_FOUND
    listed = await admin.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=other)
    assert mine.api_key.name not in {key.name for key in listed.api_keys}


async def test_the_tenants_own_limits_override_the_servers_and_apply_at_once(
    api: RunningApi,
    client: Client,
    admin: admin_pb2_grpc.AdminServiceStub,
    md: Any,
) -> None:
    tenant = await admin.GetTenant(admin_pb2.GetTenantRequest(), metadata=md)
    assert tenant.display_name == "acme"
    assert not tenant.limits.HasField("request_burst")
    defaults = tenant.effective_limits
    assert defaults.request_burst == api.server.app.settings.tenant_request_burst

    viewer = api.metadata(Role.VIEWER)
    limits = admin_pb2.TenantLimits(requests_per_second=0.001, request_burst=3)
    updated = await admin.UpdateTenant(
        admin_pb2.UpdateTenantRequest(
            tenant=admin_pb2.Tenant(limits=limits),
            update_mask=field_mask_pb2.FieldMask(
                paths=["limits.requests_per_second", "limits.request_burst"]
            ),
        ),
        metadata=md,
    )
    assert updated.limits.request_burst == 3
    assert updated.effective_limits.request_burst == 3
    assert updated.effective_limits.tokens_per_day == defaults.tokens_per_day  # untouched

    codes = []
    for _ in range(6):
        try:
            await client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=viewer)
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert codes.count(grpc.StatusCode.OK) <= 3
    # The other tenant keeps the server's defaults.
    other = key_md(api.other_tenant_key)
    for _ in range(6):
        await client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=other)


@pytest.mark.parametrize(
    ("limits", "paths", "field"),
    [
        ({"request_burst": 0}, ["limits.request_burst"], "limits.request_burst"),
        (
            {"requests_per_second": -1.0},
            ["limits.requests_per_second"],
            "limits.requests_per_second",
        ),
        ({"tokens_per_day": -5}, ["limits"], "limits.tokens_per_day"),
        ({}, ["display_name"], "update_mask"),
        ({}, [], "update_mask"),
    ],
    ids=["zero-burst", "negative-rate", "negative-tokens", "not-updatable", "no-mask"],
)
async def test_bad_limits_are_refused_with_the_field_at_fault(
    admin: admin_pb2_grpc.AdminServiceStub,
    md: Any,
    limits: dict[str, Any],
    paths: list[str],
    field: str,
) -> None:
    error = await rpc_error(
        admin.UpdateTenant(
            admin_pb2.UpdateTenantRequest(
                tenant=admin_pb2.Tenant(limits=admin_pb2.TenantLimits(**limits)),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=md,
        )
    )
    assert_invalid(error, field)


async def test_the_audit_log_records_changes_and_refusals_with_their_origin(
    api: RunningApi,
    client: Client,
    admin: admin_pb2_grpc.AdminServiceStub,
    md: Any,
) -> None:
    request_id = "audit-test-1"
    made = await admin.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(api_key=admin_pb2.ApiKey(role="viewer")),
        metadata=(*md, ("x-request-id", request_id)),
    )
    await admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(name=made.api_key.name), metadata=md)
    workflow = await create_workflow(client, md, echo_spec())
    viewer = api.metadata(Role.VIEWER)
    refused = await rpc_error(
        client.workflows.DeleteWorkflow(
            wf.DeleteWorkflowRequest(name=workflow.name), metadata=viewer
        )
    )
    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED

    events = (
        await admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_size=100), metadata=md)
    ).audit_events
    by_action: dict[str, admin_pb2.AuditEvent] = {}
    for event in events:  # newest first: the newest of each action
        by_action.setdefault(event.action, event)
    key_id = made.api_key.name.removeprefix("apiKeys/")
    created = by_action["api_key.create"]
    assert (created.resource_type, created.resource_id) == ("api_key", key_id)
    assert created.request_id == request_id
    assert created.outcome == "ok"
    assert created.source_address  # the peer, e.g. ipv4:127.0.0.1:port
    assert len(created.hash) == 64
    assert by_action["api_key.revoke"].resource_id == key_id
    assert "workflow.create" in by_action
    denied = by_action["WorkflowService.DeleteWorkflow"]
    assert denied.outcome == "permission_denied"
    assert (denied.resource_type, denied.resource_id) == (
        "workflow",
        workflow.name.removeprefix("workflows/"),
    )
    assert denied.actor.startswith("api_key:")
    # Newest first, chained: each row's previous hash is the hash of the one before it.
    sequences = [event.chain_sequence for event in events]
    assert sequences == list(range(sequences[0], sequences[0] - len(events), -1))
    for newer, older in itertools.pairwise(events):
        assert newer.previous_hash == older.hash

    only_revokes = await admin.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(action="api_key.revoke"), metadata=md
    )
    assert [event.action for event in only_revokes.audit_events] == ["api_key.revoke"]
    other = await admin.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(), metadata=key_md(api.other_tenant_key)
    )
    assert key_id not in str(other)


async def test_runs_started_and_cancelled_are_in_the_audit_log(
    api: RunningApi, client: Client, admin: admin_pb2_grpc.AdminServiceStub, md: Any
) -> None:
    workflow = await create_workflow(client, md, echo_spec())
    runner = api.metadata(Role.RUNNER)
    started = await client.executions.StartExecution(
        ex.StartExecutionRequest(workflow=workflow.name, inputs=struct({"n": 3})),
        metadata=(*runner, ("x-request-id", "start-1")),
    )
    await client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=started.name), metadata=runner
    )
    streamed = [
        event
        async for event in client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(workflow=workflow.name), metadata=runner
        )
    ]
    run_id = started.name.removeprefix("executions/")

    async def recorded() -> dict[str, admin_pb2.AuditEvent] | None:
        events = (
            await admin.ListAuditEvents(
                admin_pb2.ListAuditEventsRequest(resource_type="execution"), metadata=md
            )
        ).audit_events
        found = {f"{event.action} {event.resource_id}": event for event in events}
        return found if len(found) == 3 else None

    found = await eventually(recorded)
    start = found[f"ExecutionService.StartExecution {run_id}"]
    assert start.request_id == "start-1"
    assert start.actor == f"api_key:{await key_id(api, Role.RUNNER)}"
    assert f"ExecutionService.CancelExecution {run_id}" in found
    streamed_id = streamed[0].execution.removeprefix("executions/")
    assert f"ExecutionService.ExecuteWorkflow {streamed_id}" in found


async def key_id(api: RunningApi, role: Role) -> str:
    async with api.channel() as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        caller = await stub.GetCaller(identity_pb2.GetCallerRequest(), metadata=api.metadata(role))
    return caller.actor.removeprefix("api_key:")


async def test_sign_in_is_off_without_an_issuer(
    identity: identity_pb2_grpc.IdentityServiceStub,
) -> None:
    config = await identity.GetSignInConfig(identity_pb2.GetSignInConfigRequest())  # no key
    assert config.enabled is False
    assert config.issuer == ""
