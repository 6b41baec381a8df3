"""The roles table (api/access.py) over a real server: every RPC it serves by every role, and a key
restricted to one workflow. A new RPC with no row fails here, as does a row that drifts from
what docs/security.md promises (EXPECTED below is that promise, written out again on purpose)."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.api_fixtures import RunningApi
from support.api_helpers import Client, create_workflow, echo_spec, rpc_error, struct

from agentflow_grpc._gen.agentflow.v1 import admin_pb2, admin_pb2_grpc
from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.api import access
from agentflow_grpc.model.errors import PermissionDeniedError
from agentflow_grpc.model.records import Principal, Role

PUBLIC = None
V, R, E, A = Role.VIEWER, Role.RUNNER, Role.EDITOR, Role.ADMIN
# method → (weakest role allowed, whether a key restricted to workflows may call it at all).
EXPECTED: dict[str, tuple[Role | None, bool]] = {
    "agentflow.v1.WorkflowService/CreateWorkflow": (E, False),
    "agentflow.v1.WorkflowService/GetWorkflow": (V, True),
    "agentflow.v1.WorkflowService/ListWorkflows": (V, False),
    "agentflow.v1.WorkflowService/UpdateWorkflow": (E, False),
    "agentflow.v1.WorkflowService/DeleteWorkflow": (E, False),
    "agentflow.v1.WorkflowService/ListWorkflowVersions": (V, True),
    "agentflow.v1.WorkflowService/ValidateWorkflow": (V, True),
    "agentflow.v1.SourceService/CreateSource": (E, False),
    "agentflow.v1.SourceService/GetSource": (V, False),
    "agentflow.v1.SourceService/ListSources": (V, False),
    "agentflow.v1.SourceService/UpdateSource": (E, False),
    "agentflow.v1.SourceService/DeleteSource": (E, False),
    "agentflow.v1.SourceService/TestSource": (R, False),
    "agentflow.v1.ExecutionService/ExecuteWorkflow": (R, True),
    "agentflow.v1.ExecutionService/StartExecution": (R, True),
    "agentflow.v1.ExecutionService/StreamExecution": (V, True),
    "agentflow.v1.ExecutionService/GetExecution": (V, True),
    "agentflow.v1.ExecutionService/ListExecutions": (V, True),
    "agentflow.v1.ExecutionService/CancelExecution": (R, True),
    "agentflow.v1.ExecutionService/ListWebhookDeliveries": (V, True),
    "agentflow.v1.ObservabilityService/ListErrorGroups": (V, False),
    "agentflow.v1.ObservabilityService/GetErrorGroup": (V, False),
    "agentflow.v1.ObservabilityService/GetStats": (V, False),
    "agentflow.v1.ObservabilityService/ProfileServer": (A, False),
    "agentflow.v1.AdminService/CreateApiKey": (A, False),
    "agentflow.v1.AdminService/ListApiKeys": (A, False),
    "agentflow.v1.AdminService/RevokeApiKey": (A, False),
    "agentflow.v1.AdminService/RotateApiKey": (A, False),
    "agentflow.v1.AdminService/GetTenant": (A, False),
    "agentflow.v1.AdminService/UpdateTenant": (A, False),
    "agentflow.v1.AdminService/ListAuditEvents": (A, False),
    "agentflow.v1.IdentityService/GetSignInConfig": (PUBLIC, True),
    "agentflow.v1.IdentityService/GetCaller": (V, True),
    "agentflow.v1.HealthService/GetHealth": (PUBLIC, True),
    "grpc.health.v1.Health/Check": (PUBLIC, True),
    "grpc.health.v1.Health/Watch": (PUBLIC, True),
    "grpc.health.v1.Health/List": (PUBLIC, True),
}
RANK = [V, R, E, A]
# Reflection is a bidirectional stream: it is public (the table says so) and walked apart.
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def served_methods(channel: grpc.aio.Channel) -> dict[str, Any]:
    """Every method the server serves (by reflection), with its descriptor."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    services = [
        service.name
        async for response in responses
        for service in response.list_services_response.service
    ]
    pool = descriptor_pool.Default()
    methods = {}
    for name in services:
        if name == REFLECTION:
            continue
        service = pool.FindServiceByName(name)
        for method in service.methods:
            methods[f"{name}/{method.name}"] = method
    return methods


async def call(
    channel: grpc.aio.Channel, method: Any, metadata: Any, request: Any = None
) -> grpc.StatusCode:
    """Call `method` with `request` (default: an empty message); the status it ends with."""
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    callable_ = kind(
        path,
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    try:
        outcome = callable_(request or request_class(), metadata=metadata, timeout=3)
        if method.server_streaming:
            async for _ in outcome:
                break
            outcome.cancel()
        else:
            await outcome
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_every_served_rpc_has_a_row_and_the_rows_are_the_promised_ones(
    api: RunningApi,
) -> None:
    async with api.channel() as channel:
        served = await served_methods(channel)
    assert set(served) == set(EXPECTED)
    for method, (role, restricted_ok) in EXPECTED.items():
        rule = access.RULES[f"/{method}"]
        assert rule.role == role, method
        assert (rule.restricted is not access.Restricted.REFUSED) == restricted_ok, method
    assert access.RULES[f"/{REFLECTION}/ServerReflectionInfo"].role is None


async def test_each_role_reaches_exactly_the_methods_the_table_gives_it(api: RunningApi) -> None:
    async with api.channel() as channel:
        served = await served_methods(channel)
        for method_name, method in sorted(served.items()):
            weakest, _ = EXPECTED[method_name]
            for role in RANK:
                code = await call(channel, method, api.metadata(role))
                allowed = weakest is None or RANK.index(role) >= RANK.index(weakest)
                assert (code is not DENIED) == allowed, (method_name, role.value, code)
                assert code is not grpc.StatusCode.UNAUTHENTICATED, (method_name, role.value)


async def test_a_restricted_key_reaches_only_its_workflows_and_their_runs(
    api: RunningApi, client: Client
) -> None:
    admin = api.metadata(Role.ADMIN)
    mine = await create_workflow(client, admin, echo_spec("mine"))
    other = await create_workflow(client, admin, echo_spec("other"))
    other_run = await client.executions.StartExecution(
        ex.StartExecutionRequest(workflow=other.name, inputs=struct({"n": 2})),
        metadata=admin,
    )
    keys = admin_pb2_grpc.AdminServiceStub(client.channel)
    created = await keys.CreateApiKey(
        admin_pb2.CreateApiKeyRequest(
            api_key=admin_pb2.ApiKey(role="runner", workflows=[mine.name], description="ci")
        ),
        metadata=admin,
    )
    assert list(created.api_key.workflows) == [mine.name]
    restricted = (("x-api-key", created.secret),)

    got = await client.workflows.GetWorkflow(
        wf.GetWorkflowRequest(name=mine.name), metadata=restricted
    )
    assert got.name == mine.name
    run = await client.executions.StartExecution(
        ex.StartExecutionRequest(workflow=mine.name, inputs=struct({"n": 2})),
        metadata=restricted,
    )
    fetched = await client.executions.GetExecution(
        ex.GetExecutionRequest(name=run.name), metadata=restricted
    )
    assert fetched.name == run.name
    listed = await client.executions.ListExecutions(
        ex.ListExecutionsRequest(workflow=mine.name), metadata=restricted
    )
    assert [execution.name for execution in listed.executions] == [run.name]

    for refused in (
        client.workflows.GetWorkflow(wf.GetWorkflowRequest(name=other.name), metadata=restricted),
        client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=restricted),
        client.executions.StartExecution(
            ex.StartExecutionRequest(workflow=other.name), metadata=restricted
        ),
        client.executions.StartExecution(
            ex.StartExecutionRequest(spec=struct(echo_spec())), metadata=restricted
        ),
        client.executions.ListExecutions(ex.ListExecutionsRequest(), metadata=restricted),
    ):
        error = await rpc_error(refused)
        assert error.code() is DENIED
        assert mine.name in (error.details() or "")
    # Another workflow's run is as unknown to the key as another tenant's.
    error = await rpc_error(
        client.executions.GetExecution(
            ex.GetExecutionRequest(name=other_run.name), metadata=restricted
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    error = await rpc_error(
        client.executions.CancelExecution(
            ex.CancelExecutionRequest(name=other_run.name), metadata=restricted
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_a_method_with_no_row_is_refused_to_everyone() -> None:
    admin = Principal(tenant_id=uuid.uuid4(), role=Role.ADMIN, api_key_id=uuid.uuid4())
    with pytest.raises(PermissionDeniedError, match="has no access rule"):
        access.check("/agentflow.v1.WorkflowService/Unlisted", admin, None)
