"""The generated Python client (clients/python, betterproto2 + grpclib) against the real server:
what another service would do — create a source and a workflow, stream a run, follow a
background run, read it back — and how errors reach it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agentflow_client import (
    CancelExecutionRequest,
    CreateSourceRequest,
    CreateWorkflowRequest,
    ExecuteWorkflowRequest,
    ExecutionServiceStub,
    ExecutionState,
    GetExecutionRequest,
    GetHealthRequest,
    HealthServiceStub,
    ListWorkflowsRequest,
    Source,
    SourceServiceStub,
    StartExecutionRequest,
    StreamExecutionRequest,
    Struct,
    Workflow,
    WorkflowServiceStub,
    connect,
)
from google.rpc import error_details_pb2
from grpclib import GRPCError, Status
from support.api_fixtures import RunningApi
from support.provider import SLOW
from support.runs import answer_spec

from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer


async def add_source(channel: Any, provider: FakeProviderServer) -> Source:
    return await SourceServiceStub(channel).create_source(
        CreateSourceRequest(
            source=Source(
                display_name="openai-main",
                type="openai",
                config=Struct.from_dict({"base_url": f"{provider.url}/v1", "model": "fake-model"}),
                secrets={"api_key": "sk-client"},
            )
        )
    )


async def test_create_and_stream_a_run(api: RunningApi, provider: FakeProviderServer) -> None:
    async with connect(api.address, api_key=api.keys[Role.EDITOR]) as channel:
        source = await add_source(channel, provider)
        assert source.secret_names == ["api_key"]
        assert source.secrets == {}
        workflow = await WorkflowServiceStub(channel).create_workflow(
            CreateWorkflowRequest(workflow=Workflow(spec=Struct.from_dict(answer_spec())))
        )
        assert workflow.name.startswith("workflows/")
        assert (workflow.version, workflow.spec_name) == (1, "answer")

        request = ExecuteWorkflowRequest(
            workflow=workflow.name, inputs=Struct.from_dict({"question": "why?"})
        )
        events = [event async for event in ExecutionServiceStub(channel).execute_workflow(request)]
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        assert events[0].type == "execution_started"
        assert events[-1].type == "execution_completed"
        assert events[-1].data is not None
        assert events[-1].data.to_dict()["outputs"] == {"answer": "Echo: Answer: why?"}
        tokens = "".join(
            e.data.to_dict()["text"] for e in events if e.type == "node_token" and e.data
        )
        assert tokens == "Echo: Answer: why?"

        execution = await ExecutionServiceStub(channel).get_execution(
            GetExecutionRequest(name=events[0].execution)
        )
        assert execution.state == ExecutionState.COMPLETED
        assert execution.last_sequence == len(events)
        assert [node.node_id for node in execution.trace] == ["start", "reply"]
        assert execution.trace[1].attempts[0].streamed_text == tokens
        assert execution.usage is not None
        assert execution.usage.total_tokens > 0

        listed = await WorkflowServiceStub(channel).list_workflows(ListWorkflowsRequest())
        assert [w.name for w in listed.workflows] == [workflow.name]


async def test_follow_and_cancel_a_background_run(
    api: RunningApi, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    async with connect(api.address, api_key=api.keys[Role.EDITOR]) as channel:
        await add_source(channel, provider)
        executions = ExecutionServiceStub(channel)
        started = await executions.start_execution(
            StartExecutionRequest(
                spec=Struct.from_dict(answer_spec(prompt=SLOW + " {{ inputs.question }}")),
                inputs=Struct.from_dict({"question": "q"}),
                request_id="client-start-1",
            )
        )
        assert started.state in (ExecutionState.PENDING, ExecutionState.RUNNING)
        again = await executions.start_execution(
            StartExecutionRequest(
                spec=Struct.from_dict(answer_spec(prompt=SLOW + " {{ inputs.question }}")),
                inputs=Struct.from_dict({"question": "q"}),
                request_id="client-start-1",
            )
        )
        assert again.name == started.name  # the same request started nothing new

        seen: list[str] = []

        async def follow() -> None:
            stream = executions.stream_execution(StreamExecutionRequest(name=started.name))
            async for event in stream:
                seen.append(event.type)
                if event.type == "node_started" and event.node_id == "reply":
                    await executions.cancel_execution(
                        CancelExecutionRequest(name=started.name, reason="no longer needed")
                    )

        await asyncio.wait_for(follow(), timeout=20)
        assert seen[0] == "execution_started"
        assert seen[-1] == "execution_cancelled"
        final = await executions.get_execution(GetExecutionRequest(name=started.name))
        assert final.state == ExecutionState.CANCELLED
        assert final.error is not None
        assert final.error.code == "cancelled"


async def test_errors_reach_the_client_with_their_details(api: RunningApi) -> None:
    async with connect(api.address, api_key=api.keys[Role.EDITOR]) as channel:
        broken = {**answer_spec(), "edges": []}
        with pytest.raises(GRPCError) as invalid:
            await WorkflowServiceStub(channel).create_workflow(
                CreateWorkflowRequest(workflow=Workflow(spec=Struct.from_dict(broken)))
            )
        assert invalid.value.status is Status.INVALID_ARGUMENT
        assert invalid.value.details is not None  # googleapis-common-protos decodes them
        bad_requests = [
            d for d in invalid.value.details if isinstance(d, error_details_pb2.BadRequest)
        ]
        fields = {v.field for v in bad_requests[0].field_violations}
        assert any(field.startswith("workflow.spec/") for field in fields), fields

        with pytest.raises(GRPCError) as missing:
            await ExecutionServiceStub(channel).get_execution(
                GetExecutionRequest(name="executions/00000000-0000-0000-0000-000000000000")
            )
        assert missing.value.status is Status.NOT_FOUND

    async with connect(api.address, api_key="af_not-a-key") as channel:
        stream = ExecutionServiceStub(channel).execute_workflow(
            ExecuteWorkflowRequest(spec=Struct.from_dict(answer_spec()))
        )
        with pytest.raises(GRPCError) as refused:
            await anext(stream)
        assert refused.value.status is Status.UNAUTHENTICATED
        health = await HealthServiceStub(channel).get_health(GetHealthRequest())
        assert health.status == "SERVING"  # health needs no valid key
