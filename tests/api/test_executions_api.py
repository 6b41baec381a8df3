"""ExecutionService over gRPC: runs against the fake OpenAI-compatible provider, streamed and
recorded; background runs, followers, cancellation, deadlines, malformed requests."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from support.api_fixtures import RunningApi
from support.api_helpers import (
    FINAL_STATES,
    Client,
    assert_invalid,
    assert_well_formed,
    client_of,
    create_openai_source,
    create_workflow,
    deep_struct_field,
    event_key,
    eventually,
    field_violations,
    non_finite,
    plain,
    refused_cleanly,
    rpc_error,
    stream_error,
    struct,
    violated_fields,
)
from support.provider import SLOW, chat_requests
from support.runs import answer_spec, slow_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.testing import FakeProviderServer

Event = ex.ExecutionEvent
State = ex.Execution.State


@pytest.fixture
async def client(api: RunningApi, provider: FakeProviderServer) -> AsyncIterator[Client]:
    """A client, with the source `openai-main` (at the fake provider) created through the API."""
    async with api.channel() as channel:
        found = client_of(channel)
        await create_openai_source(found, api.metadata(), f"{provider.url}/v1")
        yield found


async def collect(call: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in call]


async def execute(client: Client, md: Any, **request: Any) -> list[Event]:
    request.setdefault("inputs", struct({"question": "why?"}))
    events = await collect(
        client.executions.ExecuteWorkflow(ex.ExecuteWorkflowRequest(**request), metadata=md)
    )
    assert_well_formed(events)
    return events


async def start(client: Client, md: Any, **request: Any) -> ex.Execution:
    request.setdefault("inputs", struct({"question": "why?"}))
    return await client.executions.StartExecution(  # type: ignore[no-any-return]
        ex.StartExecutionRequest(**request), metadata=md
    )


def follow(client: Client, md: Any, name: str, after: int = 0) -> AsyncIterator[Event]:
    return client.executions.StreamExecution(  # type: ignore[no-any-return]
        ex.StreamExecutionRequest(name=name, after_sequence=after), metadata=md
    )


async def get(client: Client, md: Any, name: str) -> ex.Execution:
    return await client.executions.GetExecution(  # type: ignore[no-any-return]
        ex.GetExecutionRequest(name=name), metadata=md
    )


async def final(client: Client, md: Any, name: str, timeout: float = 5.0) -> ex.Execution:
    async def check() -> ex.Execution | None:
        execution = await get(client, md, name)
        return execution if execution.state in FINAL_STATES else None

    return await eventually(check, timeout=timeout)


async def list_executions(client: Client, md: Any, **request: Any) -> list[ex.Execution]:
    response = await client.executions.ListExecutions(
        ex.ListExecutionsRequest(**request), metadata=md
    )
    assert not response.next_page_token
    return list(response.executions)


async def until_node_started(call: AsyncIterator[Event], node_id: str) -> list[Event]:
    seen: list[Event] = []
    async for event in call:
        seen.append(event)
        if event.type == "node_started" and event.node_id == node_id:
            return seen
    raise AssertionError(f"the stream ended before {node_id} started: {[e.type for e in seen]}")


# --- running and reading back ---


async def test_a_stored_workflow_streams_what_is_recorded(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    workflow = await create_workflow(client, md, answer_spec())
    events = await execute(client, md, workflow=workflow.name)
    name = events[0].execution
    assert name.startswith("executions/")
    types = [event.type for event in events]
    assert types[:4] == ["execution_started", "node_started", "node_completed", "node_started"]
    assert "node_token" in types
    assert types[-2:] == ["node_completed", "execution_completed"]
    assert plain(events[-1].data)["outputs"] == {"answer": "Echo: Answer: why?"}

    execution = await get(client, md, name)
    assert execution.name == name
    assert execution.state == State.STATE_COMPLETED
    assert (execution.workflow, execution.workflow_version) == (workflow.name, 1)
    assert execution.spec_hash == workflow.spec_hash
    assert plain(execution.inputs) == {"question": "why?"}
    assert plain(execution.outputs) == {"answer": "Echo: Answer: why?"}
    assert execution.usage.total_tokens > 0
    assert execution.usage.total_tokens == (
        execution.usage.prompt_tokens + execution.usage.completion_tokens
    )
    assert execution.last_sequence == len(events)
    assert execution.HasField("start_time")
    assert execution.HasField("end_time")
    assert execution.duration_ms > 0
    assert execution.creator.startswith("api_key:")
    assert not execution.HasField("error")

    start_node, reply = execution.trace
    assert (start_node.node_id, start_node.node_type, start_node.status) == (
        "start",
        "input",
        "completed",
    )
    assert (reply.node_id, reply.node_type, reply.status) == ("reply", "llm", "completed")
    (attempt,) = reply.attempts
    assert (attempt.attempt, attempt.status) == (1, "completed")
    assert attempt.streamed_text == "Echo: Answer: why?"
    assert attempt.output.struct_value["text"] == "Echo: Answer: why?"
    assert attempt.usage.total_tokens > 0
    assert attempt.duration_ms > 0
    assert reply.usage.total_tokens == execution.usage.total_tokens

    replayed = await collect(follow(client, md, name))
    assert [event_key(e) for e in replayed] == [event_key(e) for e in events]
    assert [e.time for e in replayed] == [e.time for e in events]
    assert chat_requests(provider) == 1


async def test_a_pinned_version_and_unknown_workflows(client: Client, md: Any) -> None:
    workflow = await create_workflow(client, md, answer_spec(prompt="one {{ inputs.question }}"))
    await client.workflows.UpdateWorkflow(
        wf.UpdateWorkflowRequest(
            workflow=wf.Workflow(
                name=workflow.name, spec=struct(answer_spec(prompt="two {{ inputs.question }}"))
            )
        ),
        metadata=md,
    )
    pinned = await execute(client, md, workflow=workflow.name, version=1)
    current = await execute(client, md, workflow=workflow.name)
    assert plain(pinned[-1].data)["outputs"] == {"answer": "Echo: one why?"}
    assert plain(current[-1].data)["outputs"] == {"answer": "Echo: two why?"}

    for request in (
        {"workflow": workflow.name, "version": 3},
        {"workflow": f"workflows/{uuid.uuid4()}"},
    ):
        _, error = await stream_error(
            client.executions.ExecuteWorkflow(
                ex.ExecuteWorkflowRequest(**request, inputs=struct({"question": "q"})),
                metadata=md,
            ),
            before_any=True,
        )
        assert error.code() is grpc.StatusCode.NOT_FOUND
    assert len(await list_executions(client, md)) == 2


async def test_an_inline_spec_runs_and_is_recorded_without_a_workflow(
    client: Client, md: Any
) -> None:
    events = await execute(client, md, spec=struct(answer_spec("inline")))
    execution = await get(client, md, events[0].execution)
    assert execution.state == State.STATE_COMPLETED
    assert (execution.workflow, execution.workflow_version) == ("", 0)
    assert execution.spec_hash
    assert execution.last_sequence == len(events)


async def test_a_failed_run_streams_and_records_its_error(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="refuse", status=400, message="no, thanks")
    events = await execute(
        client, md, spec=struct(answer_spec(prompt="refuse {{ inputs.question }}"))
    )
    assert events[-1].type == "execution_failed"
    execution = await get(client, md, events[0].execution)
    assert execution.state == State.STATE_FAILED
    assert execution.error.node_id == "reply"
    assert execution.error.code.startswith("provider.")
    assert execution.trace[1].attempts[0].error.code == execution.error.code


async def test_invalid_inputs_are_refused_and_nothing_is_recorded(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    workflow = await create_workflow(client, md, answer_spec())
    cases = [
        ({}, "inputs/question"),  # missing
        ({"question": 5}, "inputs/question"),  # wrong type
        ({"question": "q", "extra": 1}, "inputs/extra"),  # undeclared
    ]
    for inputs, field in cases:
        _, error = await stream_error(
            client.executions.ExecuteWorkflow(
                ex.ExecuteWorkflowRequest(workflow=workflow.name, inputs=struct(inputs)),
                metadata=md,
            ),
            before_any=True,
        )
        assert_invalid(error, field)
        started = await rpc_error(
            start(client, md, spec=struct(answer_spec()), inputs=struct(inputs))
        )
        assert_invalid(started, field)
        assert all(f.startswith("inputs/") for f, _ in field_violations(started))
    assert await list_executions(client, md) == []
    assert chat_requests(provider) == 0


async def test_an_invalid_inline_spec_names_its_violations(client: Client, md: Any) -> None:
    spec = answer_spec()
    spec["nodes"][1]["source"] = "nowhere"
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(spec=struct(spec), inputs=struct({"question": "q"})),
            metadata=md,
        ),
        before_any=True,
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == [("spec/nodes/1/source", "source.unknown")]
    assert await list_executions(client, md) == []


# --- background runs and followers ---


async def test_start_returns_at_once_and_the_stream_follows_to_the_end(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=1)
    began = time.monotonic()
    started = await start(client, md, spec=struct(slow_spec()))
    assert time.monotonic() - began < 1
    assert started.state in (State.STATE_PENDING, State.STATE_RUNNING)
    assert started.name.startswith("executions/")

    events = await collect(follow(client, md, started.name))
    assert_well_formed(events)
    assert events[-1].type == "execution_completed"
    assert {event.execution for event in events} == {started.name}
    execution = await get(client, md, started.name)
    assert execution.state == State.STATE_COMPLETED
    assert execution.last_sequence == len(events)


async def test_a_stream_after_a_sequence_yields_exactly_the_later_events(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=0.5)
    started = await start(client, md, spec=struct(slow_spec()))
    live = await collect(follow(client, md, started.name, after=2))  # joins the live run
    everything = await collect(follow(client, md, started.name))  # the recorded run
    assert_well_formed(everything)
    assert [event_key(e) for e in live] == [event_key(e) for e in everything[2:]]
    last = everything[-1].sequence
    for after in (1, last - 1, last, last + 10):
        later = await collect(follow(client, md, started.name, after=after))
        assert [event.sequence for event in later] == list(range(after + 1, last + 1))
    _, error = await stream_error(follow(client, md, started.name, after=-1), before_any=True)
    assert_invalid(error, "after_sequence")


async def test_two_followers_of_one_run_both_see_every_event(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=0.5, chunk_delay=0.02)
    started = await start(client, md, spec=struct(slow_spec()))
    first, second = await asyncio.gather(
        collect(follow(client, md, started.name)), collect(follow(client, md, started.name))
    )
    assert_well_formed(first)
    assert [event_key(e) for e in first] == [event_key(e) for e in second]
    stored = await collect(follow(client, md, started.name))
    assert [event_key(e) for e in stored] == [event_key(e) for e in first]
    assert sum(1 for e in first if e.type == "node_token") > 1


async def test_a_follower_that_goes_away_leaves_a_background_run_going(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=1)
    started = await start(client, md, spec=struct(slow_spec()))
    call = follow(client, md, started.name)
    await until_node_started(call, "reply")
    call.cancel()  # type: ignore[attr-defined]  # the follower disconnects mid-run
    execution = await final(client, md, started.name, timeout=10)
    assert execution.state == State.STATE_COMPLETED  # the run went on without it
    events = await collect(follow(client, md, started.name))
    assert events[-1].type == "execution_completed"


async def test_a_repeated_request_id_starts_one_run(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=0.3)
    first = await start(client, md, spec=struct(slow_spec()), request_id="start-1")
    again = await start(client, md, spec=struct(slow_spec()), request_id="start-1")
    assert again.name == first.name
    await final(client, md, first.name)
    after_end = await start(client, md, spec=struct(slow_spec()), request_id="start-1")
    assert after_end.name == first.name
    assert after_end.state == State.STATE_COMPLETED
    assert [e.name for e in await list_executions(client, md)] == [first.name]
    assert chat_requests(provider) == 1


# --- stopping runs ---


async def test_cancel_stops_a_background_run(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    started = await start(client, md, spec=struct(slow_spec()))
    follower = follow(client, md, started.name)
    seen = await until_node_started(follower, "reply")

    cancelled = await client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=started.name, reason="no longer needed"), metadata=md
    )
    assert cancelled.state == State.STATE_CANCELLED
    assert cancelled.error.code == "cancelled"
    rest = await collect(follower)
    events = seen + rest
    assert_well_formed(events)
    assert events[-1].type == "execution_cancelled"
    assert plain(events[-1].data)["interrupted_nodes"] == ["reply"]

    again = await client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=started.name), metadata=md
    )
    assert again.state == State.STATE_CANCELLED
    assert again.last_sequence == cancelled.last_sequence == len(events)
    execution = await get(client, md, started.name)
    assert execution.trace[1].status == "interrupted"


async def test_cancelling_a_finished_run_leaves_it_as_it_was(client: Client, md: Any) -> None:
    events = await execute(client, md, spec=struct(answer_spec()))
    cancelled = await client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=events[0].execution), metadata=md
    )
    assert cancelled.state == State.STATE_COMPLETED
    assert cancelled.last_sequence == len(events)


async def test_a_client_that_goes_away_cancels_the_run_and_it_is_recorded(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    call = client.executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(spec=struct(slow_spec()), inputs=struct({"question": "q"})),
        metadata=md,
    )
    seen = await until_node_started(call, "reply")
    call.cancel()
    execution = await final(client, md, seen[0].execution)
    assert execution.state == State.STATE_CANCELLED
    stored = await collect(follow(client, md, execution.name))
    assert_well_formed(stored)
    assert stored[-1].type == "execution_cancelled"
    assert [event_key(e) for e in stored[: len(seen)]] == [event_key(e) for e in seen]


async def test_a_client_deadline_ends_the_call_and_the_run(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    call = client.executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(spec=struct(slow_spec()), inputs=struct({"question": "q"})),
        metadata=md,
        timeout=1,
    )
    began = time.monotonic()
    seen, error = await stream_error(call)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 5
    assert seen
    assert seen[0].type == "execution_started"
    execution = await final(client, md, seen[0].execution)
    assert execution.state in (State.STATE_CANCELLED, State.STATE_FAILED)
    stored = await collect(follow(client, md, execution.name))
    assert_well_formed(stored)


# --- listing ---


async def test_list_filters_by_state_and_workflow_and_pages(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="refuse", status=400)
    workflow = await create_workflow(client, md, answer_spec())
    by_workflow = [(await execute(client, md, workflow=workflow.name))[0].execution for _ in "ab"]
    failed = (
        await execute(client, md, spec=struct(answer_spec(prompt="refuse {{ inputs.question }}")))
    )[0].execution
    inline = (await execute(client, md, spec=struct(answer_spec())))[0].execution
    newest_first = [inline, failed, *by_workflow[::-1]]

    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = await client.executions.ListExecutions(
            ex.ListExecutionsRequest(page_size=3, page_token=token), metadata=md
        )
        pages += 1
        seen += [execution.name for execution in page.executions]
        if not (token := page.next_page_token):
            break
    assert (pages, seen) == (2, newest_first)

    def names(executions: list[ex.Execution]) -> list[str]:
        return [execution.name for execution in executions]

    assert names(await list_executions(client, md, states=[State.STATE_FAILED])) == [failed]
    assert (
        names(await list_executions(client, md, states=[State.STATE_COMPLETED, State.STATE_FAILED]))
        == newest_first
    )
    completed = await list_executions(client, md, states=[State.STATE_COMPLETED])
    assert names(completed) == [inline, *by_workflow[::-1]]
    assert await list_executions(client, md, states=[State.STATE_RUNNING]) == []
    assert names(await list_executions(client, md, workflow=workflow.name)) == by_workflow[::-1]
    assert (
        await list_executions(client, md, workflow=workflow.name, states=[State.STATE_FAILED]) == []
    )

    paged: list[str] = []
    token = ""
    while True:
        page = await client.executions.ListExecutions(
            ex.ListExecutionsRequest(workflow=workflow.name, page_size=1, page_token=token),
            metadata=md,
        )
        paged += [execution.name for execution in page.executions]
        if not (token := page.next_page_token):
            break
    assert paged == by_workflow[::-1]

    for request, field in (
        ({"states": [State.STATE_UNSPECIFIED]}, "states"),
        ({"workflow": "workflows/nope"}, "workflow"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "garbage"}, "page_token"),
    ):
        error = await rpc_error(
            client.executions.ListExecutions(ex.ListExecutionsRequest(**request), metadata=md)
        )
        assert_invalid(error, field)


# --- malformed requests ---


async def test_both_a_workflow_and_a_spec_or_neither_is_invalid(client: Client, md: Any) -> None:
    workflow = await create_workflow(client, md, answer_spec())
    for request in (
        {"workflow": workflow.name, "spec": struct(answer_spec())},
        {},
        {"workflow": "workflows/not-a-uuid"},
        {"workflow": workflow.name, "version": -1},
    ):
        _, error = await stream_error(
            client.executions.ExecuteWorkflow(
                ex.ExecuteWorkflowRequest(**request, inputs=struct({"question": "q"})),
                metadata=md,
            ),
            before_any=True,
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, request
        started = await rpc_error(start(client, md, **request))
        assert started.code() is grpc.StatusCode.INVALID_ARGUMENT, request
    assert await list_executions(client, md) == []


async def test_a_spec_nested_too_deep_is_invalid_argument(client: Client, md: Any) -> None:
    # A spec with `"title": {"a": {"a": … 200 deep`: protobuf's nesting limit refuses it.
    request = ex.ExecuteWorkflowRequest(
        spec=struct(answer_spec()), inputs=struct({"question": "q"})
    ).SerializeToString() + deep_struct_field(3, "title", 200)
    raw_stream = client.channel.unary_stream(
        "/agentflow.v1.ExecutionService/ExecuteWorkflow",
        request_serializer=lambda b: b,
        response_deserializer=Event.FromString,
    )
    _, error = await stream_error(raw_stream(request, metadata=md), before_any=True)
    assert_invalid(error, "request")

    validate = wf.ValidateWorkflowRequest().SerializeToString() + deep_struct_field(1, "title", 200)
    raw_unary = client.channel.unary_unary(
        "/agentflow.v1.WorkflowService/ValidateWorkflow",
        request_serializer=lambda b: b,
        response_deserializer=wf.ValidateWorkflowResponse.FromString,
    )
    assert_invalid(await rpc_error(raw_unary(validate, metadata=md)), "request")

    # Nested within the limit, the same request is a spec like any other.
    shallow = wf.ValidateWorkflowRequest(spec=struct(answer_spec())).SerializeToString()
    checked = await raw_unary(shallow + deep_struct_field(1, "title", 5), metadata=md)
    assert [v.path for v in checked.violations] == ["/title"]  # a title must be a string
    assert await list_executions(client, md) == []


async def test_garbage_bytes_are_invalid_argument(client: Client, md: Any) -> None:
    raw_unary = client.channel.unary_unary(
        "/agentflow.v1.WorkflowService/GetWorkflow",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    error = await rpc_error(raw_unary(b"\xff\xff\xff", metadata=md))
    assert_invalid(error, "request")

    raw_stream = client.channel.unary_stream(
        "/agentflow.v1.ExecutionService/ExecuteWorkflow",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    _, error = await stream_error(raw_stream(b"\xff\xff\xff", metadata=md), before_any=True)
    assert_invalid(error, "request")
    assert await list_executions(client, md) == []


async def test_a_message_over_the_size_limit_is_resource_exhausted(client: Client, md: Any) -> None:
    huge = struct({**answer_spec(), "description": "x" * (10 * 1024 * 1024)})
    error = await rpc_error(
        client.workflows.ValidateWorkflow(wf.ValidateWorkflowRequest(spec=huge), metadata=md)
    )
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(ex.ExecuteWorkflowRequest(spec=huge), metadata=md)
    )
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server is fine afterwards.
    assert await list_executions(client, md) == []


async def test_a_huge_request_id_is_invalid_argument(client: Client, md: Any) -> None:
    error = await rpc_error(start(client, md, spec=struct(answer_spec()), request_id="r" * 200_000))
    assert_invalid(error, "request_id")
    assert len(error.details() or "") < 1000
    error = await rpc_error(create_workflow(client, md, answer_spec(), request_id="r" * 200_000))
    assert_invalid(error, "request_id")
    assert await list_executions(client, md) == []


# --- text and numbers the database or JSON cannot hold ---


@pytest.mark.parametrize(
    "inputs",
    [
        struct({"question": "a\x00b"}),  # PostgreSQL cannot store U+0000 in jsonb
        non_finite({}, "question", math.nan),  # JSON has no NaN
        non_finite({}, "question", math.inf),
    ],
    ids=["nul", "nan", "inf"],
)
async def test_inputs_the_log_cannot_hold_are_invalid_argument(
    client: Client, md: Any, provider: FakeProviderServer, inputs: Any
) -> None:
    _, error = await stream_error(
        client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(spec=struct(answer_spec()), inputs=inputs), metadata=md
        ),
        before_any=True,
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    await refused_cleanly(start(client, md, spec=struct(answer_spec()), inputs=inputs))
    assert await list_executions(client, md) == []
    assert chat_requests(provider) == 0


async def test_an_out_of_range_time_filter_is_invalid_argument(client: Client, md: Any) -> None:
    for field in ("create_time_after", "create_time_before"):
        for seconds in (2**62, -(2**40)):
            request = ex.ListExecutionsRequest(**{field: timestamp_pb2.Timestamp(seconds=seconds)})
            error = await refused_cleanly(client.executions.ListExecutions(request, metadata=md))
            assert field in violated_fields(error)


async def test_a_cancel_reason_with_a_nul_character_still_cancels_the_run(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    started = await start(client, md, spec=struct(slow_spec()))
    follower = follow(client, md, started.name)
    await until_node_started(follower, "reply")
    call = client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=started.name, reason="stop\x00now"), metadata=md
    )
    if await call.code() is grpc.StatusCode.OK:
        cancelled = await call
    else:  # refusing the reason would be right too…
        assert await call.code() is grpc.StatusCode.INVALID_ARGUMENT, await call.details()
        cancelled = await client.executions.CancelExecution(
            ex.CancelExecutionRequest(name=started.name), metadata=md
        )
    # …but a run must never be left RUNNING, its log cut short.
    assert cancelled.state == State.STATE_CANCELLED
    events = await collect(follow(client, md, started.name))
    assert_well_formed(events)
    assert events[-1].type == "execution_cancelled"


async def test_a_provider_reply_with_a_nul_character_is_recorded_to_the_end(
    client: Client, md: Any, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="odd", reply="odd\x00reply")
    call = client.executions.ExecuteWorkflow(
        ex.ExecuteWorkflowRequest(
            spec=struct(answer_spec(prompt="odd {{ inputs.question }}")),
            inputs=struct({"question": "q"}),
        ),
        metadata=md,
    )
    events = await collect(call)  # no INTERNAL: the provider's text is not the client's fault
    assert_well_formed(events)
    execution = await final(client, md, events[0].execution)
    assert execution.last_sequence == len(events)
    stored = await collect(follow(client, md, execution.name))
    assert [e.type for e in stored] == [e.type for e in events]
