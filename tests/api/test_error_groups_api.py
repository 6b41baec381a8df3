"""ObservabilityService's ListErrorGroups and GetErrorGroup over gRPC, fed by real failing runs
(the fake provider refusing or overloaded) and a real internal error: counts, first and last
seen, workflows, occurrences, retries; tenants apart; bad requests refused with a field."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from support.api_fixtures import RunningApi
from support.api_helpers import (
    Client,
    assert_invalid,
    client_of,
    create_openai_source,
    create_workflow,
    eventually,
    rpc_error,
    struct,
)
from support.runs import answer_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import observability_pb2 as ob
from agentflow_grpc._gen.agentflow.v1 import observability_pb2_grpc
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

Metadata = Any
FAST_RETRY = {"max_attempts": 3, "backoff": {"initial": 0.01, "max": 0.02, "jitter": False}}


@pytest.fixture
async def client(api: RunningApi, provider: FakeProviderServer) -> AsyncIterator[Client]:
    async with api.channel() as channel:
        found = client_of(channel)
        await create_openai_source(found, api.metadata(), f"{provider.url}/v1")
        yield found


@pytest.fixture
def groups(client: Client) -> observability_pb2_grpc.ObservabilityServiceStub:
    return observability_pb2_grpc.ObservabilityServiceStub(client.channel)


async def run(client: Client, md: Metadata, **request: Any) -> list[ex.ExecutionEvent]:
    request.setdefault("inputs", struct({"question": "why?"}))
    call = client.executions.ExecuteWorkflow(ex.ExecuteWorkflowRequest(**request), metadata=md)
    events = [event async for event in call]
    assert events[-1].type == "execution_failed", [event.type for event in events]
    return events


async def list_groups(
    groups: observability_pb2_grpc.ObservabilityServiceStub, md: Metadata, **request: Any
) -> list[ob.ErrorGroup]:
    response = await groups.ListErrorGroups(ob.ListErrorGroupsRequest(**request), metadata=md)
    return list(response.error_groups)


def when(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


async def test_failed_runs_make_one_group_with_counts_times_workflows_and_occurrences(
    api: RunningApi,
    client: Client,
    groups: observability_pb2_grpc.ObservabilityServiceStub,
    md: Metadata,
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(contains="refuse", status=400, message="no, thanks")
    spec = answer_spec("refuser", prompt="refuse {{ inputs.question }}")
    workflow = await create_workflow(client, md, spec)
    before = datetime.now(UTC)
    runs = [
        await run(client, md, workflow=workflow.name, inputs=struct({"question": "one?"})),
        await run(client, md, spec=struct(spec)),  # inline: no workflow
        await run(client, md, workflow=workflow.name, inputs=struct({"question": "3?"})),
    ]
    after = datetime.now(UTC)
    executions = [events[0].execution for events in runs]

    [listed] = await list_groups(groups, md)
    assert re.fullmatch("errorGroups/[0-9a-f]{32}", listed.name)
    assert (listed.code, listed.node_type, listed.kind) == (
        "provider.rejected",
        "llm",
        "node_attempt",
    )
    assert (listed.count, listed.failed_execution_count) == (3, 3)
    assert (list(listed.workflows), listed.workflow_count) == ([workflow.name], 1)
    assert listed.message_pattern.startswith("HTTP 400: ")
    assert "no, thanks" in listed.sample_message
    assert before <= when(listed.first_seen_time) <= when(listed.last_seen_time) <= after
    assert not listed.occurrences  # a list leaves them out
    assert not listed.stack

    group = await groups.GetErrorGroup(ob.GetErrorGroupRequest(name=listed.name), metadata=md)
    assert group.count == 3
    assert [item.execution for item in group.occurrences] == executions[::-1]  # newest first
    assert [item.workflow for item in group.occurrences] == [workflow.name, "", workflow.name]
    for item in group.occurrences:
        assert (item.kind, item.node_id, item.attempt, item.ended_execution) == (
            "node_attempt",
            "reply",
            1,
            True,
        )
        assert item.message == group.sample_message
        assert item.method == ""
    assert when(group.occurrences[-1].time) == when(group.first_seen_time)
    assert when(group.occurrences[0].time) == when(group.last_seen_time)
    failed = await client.executions.GetExecution(
        ex.GetExecutionRequest(name=executions[-1]), metadata=md
    )
    assert failed.error.message == group.sample_message  # what the run itself says

    # Any role reads them.
    viewer = await list_groups(groups, api.metadata(Role.VIEWER))
    assert [group.name for group in viewer] == [listed.name]


async def test_every_attempt_of_a_retried_node_counts_and_only_the_last_ended_the_run(
    client: Client,
    groups: observability_pb2_grpc.ObservabilityServiceStub,
    md: Metadata,
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(contains="overload", status=503, message="overloaded, try again")
    spec = answer_spec("retried", prompt="overload {{ inputs.question }}")
    spec["nodes"][1]["retry"] = FAST_RETRY
    events = await run(client, md, spec=struct(spec))
    assert [event.attempt for event in events if event.type == "node_failed"] == [1, 2, 3]

    [listed] = await list_groups(groups, md)
    assert (listed.code, listed.count, listed.failed_execution_count) == (
        "provider.unavailable",
        3,
        1,
    )
    assert (list(listed.workflows), listed.workflow_count) == ([], 0)  # an inline spec
    group = await groups.GetErrorGroup(ob.GetErrorGroupRequest(name=listed.name), metadata=md)
    assert [(item.attempt, item.ended_execution) for item in group.occurrences] == [
        (3, True),
        (2, False),
        (1, False),
    ]
    assert {item.execution for item in group.occurrences} == {events[0].execution}

    # Filters: by code, and by last seen.
    assert await list_groups(groups, md, code="provider.rejected") == []
    assert [g.name for g in await list_groups(groups, md, code="provider.unavailable")] == [
        listed.name
    ]
    later = timestamp_pb2.Timestamp()
    later.FromDatetime(when(listed.last_seen_time).replace(year=2999))
    assert await list_groups(groups, md, last_seen_after=later) == []


async def test_groups_page_by_page_most_recently_seen_first(
    client: Client,
    groups: observability_pb2_grpc.ObservabilityServiceStub,
    md: Metadata,
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(contains="refuse", status=400, message="no")
    provider.add_rule(contains="forbid", status=403, message="not you")
    await run(client, md, spec=struct(answer_spec("a", prompt="refuse {{ inputs.question }}")))
    await run(client, md, spec=struct(answer_spec("b", prompt="forbid {{ inputs.question }}")))

    first = await groups.ListErrorGroups(ob.ListErrorGroupsRequest(page_size=1), metadata=md)
    assert first.next_page_token
    second = await groups.ListErrorGroups(
        ob.ListErrorGroupsRequest(page_size=1, page_token=first.next_page_token), metadata=md
    )
    assert not second.next_page_token
    codes = [group.code for group in (*first.error_groups, *second.error_groups)]
    assert codes == ["provider.unauthenticated", "provider.rejected"]


async def test_another_tenant_sees_none_of_them(
    api: RunningApi,
    client: Client,
    groups: observability_pb2_grpc.ObservabilityServiceStub,
    md: Metadata,
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(contains="refuse", status=400, message="no")
    await run(client, md, spec=struct(answer_spec(prompt="refuse {{ inputs.question }}")))
    [group] = await list_groups(groups, md)

    other = (("x-api-key", api.other_tenant_key),)
    assert await list_groups(groups, other) == []
    error = await rpc_error(
        groups.GetErrorGroup(ob.GetErrorGroupRequest(name=group.name), metadata=other)
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_bad_requests_are_refused_naming_their_field(
    groups: observability_pb2_grpc.ObservabilityServiceStub, md: Metadata
) -> None:
    for name in (
        "",
        "errorGroups/",
        "errorGroups/XYZ",
        f"workflows/{uuid.uuid4()}",
        "errorGroups/" + "A" * 32,
    ):
        error = await rpc_error(
            groups.GetErrorGroup(ob.GetErrorGroupRequest(name=name), metadata=md)
        )
        assert_invalid(error, "name")
    unknown = await rpc_error(
        groups.GetErrorGroup(ob.GetErrorGroupRequest(name="errorGroups/" + "0" * 32), metadata=md)
    )
    assert unknown.code() is grpc.StatusCode.NOT_FOUND
    for request, field in [
        (ob.ListErrorGroupsRequest(page_size=-1), "page_size"),
        (ob.ListErrorGroupsRequest(page_token="not-a-token"), "page_token"),
        (ob.ListErrorGroupsRequest(code="x" * 201), "code"),
        (
            ob.ListErrorGroupsRequest(last_seen_after=timestamp_pb2.Timestamp(seconds=-(10**12))),
            "last_seen_after",
        ),
    ]:
        assert_invalid(await rpc_error(groups.ListErrorGroups(request, metadata=md)), field)
    unauthenticated = await rpc_error(groups.ListErrorGroups(ob.ListErrorGroupsRequest()))
    assert unauthenticated.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_an_internal_error_is_recorded_with_its_stack(
    api: RunningApi,
    client: Client,
    groups: observability_pb2_grpc.ObservabilityServiceStub,
    md: Metadata,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"the version cache lost entry {uuid.uuid4()}")

    monkeypatch.setattr(api.server.app.workflows, "get", crash)
    for _ in range(2):
        error = await rpc_error(
            client.workflows.GetWorkflow(
                wf.GetWorkflowRequest(name=f"workflows/{uuid.uuid4()}"), metadata=md
            )
        )
        assert error.code() is grpc.StatusCode.INTERNAL

    async def recorded() -> list[ob.ErrorGroup]:
        found = await list_groups(groups, md, code="internal")
        return found if found and found[0].count == 2 else []

    [listed] = await eventually(recorded)
    assert (listed.kind, listed.node_type, listed.failed_execution_count) == ("internal", "", 0)
    assert listed.message_pattern == "RuntimeError: the version cache lost entry <uuid>"
    group = await groups.GetErrorGroup(ob.GetErrorGroupRequest(name=listed.name), metadata=md)
    assert group.stack.startswith("Traceback (most recent call last):")
    assert "in crash" in group.stack
    assert group.stack.rstrip().endswith(group.sample_message)
    # The stack shows the server's files and lines: admins only; other roles see the message.
    for role in (Role.EDITOR, Role.RUNNER, Role.VIEWER):
        seen = await groups.GetErrorGroup(
            ob.GetErrorGroupRequest(name=listed.name), metadata=api.metadata(role)
        )
        assert (seen.stack, seen.sample_message) == ("", group.sample_message)
        [as_listed] = await list_groups(groups, api.metadata(role), code="internal")
        assert as_listed.stack == ""
    assert [item.method for item in group.occurrences] == [
        "/agentflow.v1.WorkflowService/GetWorkflow"
    ] * 2
    assert {(item.kind, item.execution, item.workflow) for item in group.occurrences} == {
        ("internal", "", "")
    }
