"""Authentication, roles, tenant isolation, request ids, health and reflection, over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.api_fixtures import RunningApi
from support.api_helpers import (
    FINAL_STATES,
    Client,
    create_workflow,
    echo_spec,
    error_info,
    eventually,
    request_info,
    rich_status,
    router_spec,
    rpc_error,
    stream_error,
    struct,
)

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import health_pb2 as af_health
from agentflow_grpc._gen.agentflow.v1 import source_pb2 as src
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.model.records import Role
from agentflow_grpc.storage.tenants import hash_key

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def key(value: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", value),)


async def run_to_end(client: Client, md: Any, **request: Any) -> ex.Execution:
    started = await client.executions.StartExecution(
        ex.StartExecutionRequest(**request), metadata=md
    )

    async def final() -> ex.Execution | None:
        got = await client.executions.GetExecution(
            ex.GetExecutionRequest(name=started.name), metadata=md
        )
        return got if got.state in FINAL_STATES else None

    return await eventually(final)


# --- authentication ---


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        key(""),
        key("af_" + "x" * 43),  # the shape of a key, but none issued
        key("not-even-the-shape"),
        (("authorization", "Bearer af_unknownunknownunknown"),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer "),),
    ],
    ids=["none", "empty", "unknown", "garbage", "unknown-bearer", "basic", "empty-bearer"],
)
async def test_a_call_without_a_valid_key_is_unauthenticated(
    client: Client, metadata: tuple[tuple[str, str], ...]
) -> None:
    error = await rpc_error(
        client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=metadata)
    )
    assert error.code() is UNAUTHENTICATED
    assert error_info(error).domain == "agentflow.dev"


async def test_both_streams_refuse_a_missing_key_before_any_message(client: Client) -> None:
    execute = client.executions.ExecuteWorkflow(ex.ExecuteWorkflowRequest(spec=struct(echo_spec())))
    _, error = await stream_error(execute, before_any=True)
    assert error.code() is UNAUTHENTICATED
    assert error_info(error).reason == "unauthenticated"

    follow = client.executions.StreamExecution(
        ex.StreamExecutionRequest(name=f"executions/{uuid.uuid4()}")
    )
    _, error = await stream_error(follow, before_any=True)
    assert error.code() is UNAUTHENTICATED


async def test_nothing_is_run_for_an_unauthenticated_execute(
    client: Client, api: RunningApi
) -> None:
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(spec=struct(echo_spec())), metadata=key("af_nope")
        ),
        before_any=True,
    )
    assert error.code() is UNAUTHENTICATED
    listed = await client.executions.ListExecutions(
        ex.ListExecutionsRequest(), metadata=api.metadata()
    )
    assert list(listed.executions) == []


async def test_a_bearer_token_works_like_x_api_key(client: Client, api: RunningApi) -> None:
    bearer = (("authorization", f"Bearer {api.keys[Role.ADMIN]}"),)
    created = await create_workflow(client, bearer)
    lowercase = (("authorization", f"bearer {api.keys[Role.VIEWER]}"),)
    got = await client.workflows.GetWorkflow(
        wf.GetWorkflowRequest(name=created.name), metadata=lowercase
    )
    assert got.name == created.name


async def test_a_revoked_key_is_unauthenticated(
    client: Client, api: RunningApi, owner: asyncpg.Connection
) -> None:
    editor = key(api.keys[Role.EDITOR])
    await client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=editor)  # cached
    row = await owner.fetchrow(
        "SELECT id, tenant_id FROM api_keys WHERE key_hash = $1", hash_key(api.keys[Role.EDITOR])
    )
    # Revoked as AdminService and the CLI do it: every server drops the key from its cache.
    await api.server.app.tenants.revoke_api_key(row["tenant_id"], row["id"], actor="test")
    error = await rpc_error(
        client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=editor)
    )
    assert error.code() is UNAUTHENTICATED
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(spec=struct(echo_spec())), metadata=editor
        ),
        before_any=True,
    )
    assert error.code() is UNAUTHENTICATED
    # The other keys still work.
    await client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=api.metadata())


# --- roles ---


async def test_a_viewer_reads_but_cannot_write_or_run(client: Client, api: RunningApi) -> None:
    created = await create_workflow(client, api.metadata())
    viewer = api.metadata(Role.VIEWER)
    error = await rpc_error(create_workflow(client, viewer))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "permission_denied"

    got = await client.workflows.GetWorkflow(
        wf.GetWorkflowRequest(name=created.name), metadata=viewer
    )
    assert got.name == created.name
    listed = await client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=viewer)
    assert [w.name for w in listed.workflows] == [created.name]
    checked = await client.workflows.ValidateWorkflow(
        wf.ValidateWorkflowRequest(spec=struct(router_spec())), metadata=viewer
    )
    assert checked.valid

    denied = [
        client.workflows.DeleteWorkflow(
            wf.DeleteWorkflowRequest(name=created.name), metadata=viewer
        ),
        client.workflows.UpdateWorkflow(
            wf.UpdateWorkflowRequest(workflow=wf.Workflow(name=created.name, spec=created.spec)),
            metadata=viewer,
        ),
        client.executions.StartExecution(
            ex.StartExecutionRequest(workflow=created.name), metadata=viewer
        ),
        client.sources.CreateSource(
            src.CreateSourceRequest(source=src.Source(display_name="db", type="postgres")),
            metadata=viewer,
        ),
    ]
    for call in denied:
        assert (await rpc_error(call)).code() is grpc.StatusCode.PERMISSION_DENIED
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(workflow=created.name), metadata=viewer
        ),
        before_any=True,
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    listed_runs = await client.executions.ListExecutions(
        ex.ListExecutionsRequest(), metadata=api.metadata()
    )
    assert list(listed_runs.executions) == []


async def test_a_runner_runs_but_cannot_create(client: Client, api: RunningApi) -> None:
    runner = api.metadata(Role.RUNNER)
    error = await rpc_error(create_workflow(client, runner, echo_spec()))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED

    stored = await create_workflow(client, api.metadata(Role.EDITOR), echo_spec())
    events = [
        event
        async for event in client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(workflow=stored.name, inputs=struct({"n": 2})),
            metadata=runner,
        )
    ]
    assert events[-1].type == "execution_completed"
    got = await client.executions.GetExecution(
        ex.GetExecutionRequest(name=events[0].execution), metadata=runner
    )
    assert got.state == ex.Execution.STATE_COMPLETED
    assert got.workflow == stored.name


# --- tenant isolation ---


async def test_another_tenant_sees_and_touches_nothing(client: Client, api: RunningApi) -> None:
    acme = api.metadata()
    workflow = await create_workflow(client, acme, echo_spec())
    source = await client.sources.CreateSource(
        src.CreateSourceRequest(
            source=src.Source(
                display_name="db", type="postgres", config=struct({"dsn": "postgresql://x@h/db"})
            )
        ),
        metadata=acme,
    )
    execution = await run_to_end(client, acme, workflow=workflow.name)
    assert execution.state == ex.Execution.STATE_COMPLETED
    background = await client.executions.StartExecution(
        ex.StartExecutionRequest(spec=struct(echo_spec())), metadata=acme
    )
    globex = key(api.other_tenant_key)

    not_found = [
        client.workflows.GetWorkflow(wf.GetWorkflowRequest(name=workflow.name), metadata=globex),
        client.workflows.UpdateWorkflow(
            wf.UpdateWorkflowRequest(
                workflow=wf.Workflow(name=workflow.name, spec=workflow.spec, etag=workflow.etag)
            ),
            metadata=globex,
        ),
        client.workflows.DeleteWorkflow(
            wf.DeleteWorkflowRequest(name=workflow.name), metadata=globex
        ),
        client.workflows.ListWorkflowVersions(
            wf.ListWorkflowVersionsRequest(parent=workflow.name), metadata=globex
        ),
        client.sources.GetSource(src.GetSourceRequest(name=source.name), metadata=globex),
        client.sources.UpdateSource(
            src.UpdateSourceRequest(
                source=src.Source(name=source.name, description="mine now"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            ),
            metadata=globex,
        ),
        client.sources.DeleteSource(src.DeleteSourceRequest(name=source.name), metadata=globex),
        client.sources.TestSource(src.TestSourceRequest(name=source.name), metadata=globex),
        client.executions.GetExecution(
            ex.GetExecutionRequest(name=execution.name), metadata=globex
        ),
        client.executions.CancelExecution(
            ex.CancelExecutionRequest(name=background.name), metadata=globex
        ),
        client.executions.StartExecution(
            ex.StartExecutionRequest(workflow=workflow.name), metadata=globex
        ),
    ]
    for call in not_found:
        error = await rpc_error(call)
        assert error.code() is grpc.StatusCode.NOT_FOUND, error.details()

    for name in (execution.name, background.name):
        _, error = await stream_error(
            client.executions.StreamExecution(
                ex.StreamExecutionRequest(name=name), metadata=globex
            ),
            before_any=True,
        )
        assert error.code() is grpc.StatusCode.NOT_FOUND
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(workflow=workflow.name), metadata=globex
        ),
        before_any=True,
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND

    workflows = await client.workflows.ListWorkflows(
        wf.ListWorkflowsRequest(show_deleted=True), metadata=globex
    )
    assert list(workflows.workflows) == []
    sources = await client.sources.ListSources(src.ListSourcesRequest(), metadata=globex)
    assert list(sources.sources) == []
    executions = await client.executions.ListExecutions(ex.ListExecutionsRequest(), metadata=globex)
    assert list(executions.executions) == []
    by_workflow = await client.executions.ListExecutions(
        ex.ListExecutionsRequest(workflow=workflow.name), metadata=globex
    )
    assert list(by_workflow.executions) == []

    # Acme's things are as they were.
    got = await client.workflows.GetWorkflow(
        wf.GetWorkflowRequest(name=workflow.name), metadata=acme
    )
    assert (got.version, got.etag, got.HasField("delete_time")) == (1, workflow.etag, False)
    kept = await client.sources.GetSource(src.GetSourceRequest(name=source.name), metadata=acme)
    assert kept.description == ""
    assert not kept.HasField("delete_time")
    # The same display name is free in the other tenant: names are per tenant.
    theirs = await client.sources.CreateSource(
        src.CreateSourceRequest(
            source=src.Source(
                display_name="db", type="postgres", config=struct({"dsn": "postgresql://y@h/db"})
            )
        ),
        metadata=globex,
    )
    assert theirs.name != source.name


# --- public methods: health and reflection ---


async def test_health_needs_no_key(client: Client) -> None:
    health = await client.health.GetHealth(af_health.GetHealthRequest())
    assert health.status == "SERVING"
    assert health.version
    by_name = {d.name: d for d in health.dependencies}
    assert by_name["database"].status == "SERVING"

    standard = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "agentflow.v1.WorkflowService", "agentflow.v1.ExecutionService"):
        answer = await standard.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    unknown = await rpc_error(standard.Check(health_pb2.HealthCheckRequest(service="nope.Nope")))
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    watch = standard.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await watch.read()  # the servicer writes with context.write(), not by yielding
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    listed = await standard.List(health_pb2.HealthListRequest())
    assert {"", "agentflow.v1.WorkflowService", "agentflow.v1.AdminService"} <= set(listed.statuses)
    assert {answer.status for answer in listed.statuses.values()} == {
        health_pb2.HealthCheckResponse.SERVING
    }


async def test_reflection_lists_our_services_and_describes_them(client: Client) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="agentflow.v1.ExecutionService"
        ),
    ]
    responses = [response async for response in stub.ServerReflectionInfo(iter(requests))]
    listed = {service.name for service in responses[0].list_services_response.service}
    assert {
        "agentflow.v1.WorkflowService",
        "agentflow.v1.SourceService",
        "agentflow.v1.ExecutionService",
        "agentflow.v1.HealthService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= listed
    files = responses[1].file_descriptor_response.file_descriptor_proto
    assert files, responses[1]
    assert any(b"ExecuteWorkflow" in descriptor for descriptor in files)


# --- request ids ---


async def test_every_response_carries_a_request_id(client: Client, api: RunningApi) -> None:
    md = api.metadata()
    ok = client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=md)
    await ok
    assert dict(await ok.initial_metadata())["x-request-id"]

    refused = await rpc_error(client.workflows.ListWorkflows(wf.ListWorkflowsRequest()))
    request_id = dict(refused.initial_metadata())["x-request-id"]
    assert request_id
    # The error's details name the same request id.
    assert error_info(refused).metadata["request_id"] == request_id
    assert request_info(refused).request_id == request_id

    stream = client.executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(spec=struct(echo_spec())), metadata=md
    )
    assert dict(await stream.initial_metadata())["x-request-id"]
    assert [event async for event in stream][-1].type == "execution_completed"

    public = client.health.GetHealth(af_health.GetHealthRequest())
    await public
    assert dict(await public.initial_metadata())["x-request-id"]

    ids = set()
    for _ in range(3):
        call = client.workflows.ListWorkflows(wf.ListWorkflowsRequest(), metadata=md)
        await call
        ids.add(dict(await call.initial_metadata())["x-request-id"])
    assert len(ids) == 3


async def test_a_callers_request_id_is_echoed_and_a_bad_one_replaced(
    client: Client, api: RunningApi
) -> None:
    given = "trace-1234.abc:def_9-x"
    call = client.workflows.ListWorkflows(
        wf.ListWorkflowsRequest(), metadata=(*api.metadata(), ("x-request-id", given))
    )
    await call
    assert dict(await call.initial_metadata())["x-request-id"] == given

    refused = await rpc_error(
        client.workflows.GetWorkflow(
            wf.GetWorkflowRequest(name="nope"), metadata=(*api.metadata(), ("x-request-id", given))
        )
    )
    assert dict(refused.initial_metadata())["x-request-id"] == given
    assert error_info(refused).metadata["request_id"] == given

    stream = client.executions.StreamExecution(
        ex.StreamExecutionRequest(name=f"executions/{uuid.uuid4()}"),
        metadata=(*api.metadata(), ("x-request-id", given)),
    )
    _, error = await stream_error(stream, before_any=True)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    # A stream refused before its first message sends no headers of its own (trailers only,
    # so that a proxy can still give it an HTTP status): the request id rides in the trailers.
    assert "x-request-id" not in dict(await stream.initial_metadata())
    assert dict(error.trailing_metadata())["x-request-id"] == given
    assert error_info(error).metadata["request_id"] == given

    for bad in ("has spaces", "x" * 129, "new\\line"):
        call = client.workflows.ListWorkflows(
            wf.ListWorkflowsRequest(), metadata=(*api.metadata(), ("x-request-id", bad))
        )
        await call
        echoed = dict(await call.initial_metadata())["x-request-id"]
        assert echoed
        assert echoed != bad


# --- internal errors ---


async def test_an_internal_error_names_the_request_id_and_nothing_of_the_exception(
    client: Client, api: RunningApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    leak = "connection string postgresql://admin:hunter2@db/prod"

    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError(leak)

    monkeypatch.setattr(api.server.app.workflows, "get", crash)
    error = await rpc_error(
        client.workflows.GetWorkflow(
            wf.GetWorkflowRequest(name=f"workflows/{uuid.uuid4()}"), metadata=api.metadata()
        )
    )
    assert error.code() is grpc.StatusCode.INTERNAL
    request_id = dict(error.initial_metadata())["x-request-id"]
    assert error.details() == f"internal error; request id {request_id}"
    status = rich_status(error)
    text = status.SerializeToString() + b"".join(
        value if isinstance(value, bytes) else value.encode()
        for _, value in error.trailing_metadata() or ()
    )
    for secret in (b"hunter2", b"RuntimeError", b"Traceback", b".py"):
        assert secret not in text
    info = error_info(error)
    assert (info.reason, info.metadata["request_id"]) == ("internal", request_id)

    # The same for a stream that fails before its first event.
    def crash_stream(*args: object, **kwargs: object) -> AsyncIterator[object]:
        raise RuntimeError(leak)

    monkeypatch.setattr(api.server.app.executions, "stream", crash_stream)
    _, error = await stream_error(
        client.executions.StreamExecution(
            ex.StreamExecutionRequest(name=f"executions/{uuid.uuid4()}"), metadata=api.metadata()
        ),
        before_any=True,
    )
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "hunter2" not in (error.details() or "")
    assert error_info(error).reason == "internal"
