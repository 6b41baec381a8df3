"""Execution streams over REST: server-sent events through Envoy, read as a plain HTTP client
(`curl -N`) reads them. They carry the same events as the gRPC streams; a failed run ends its
stream with an event (the HTTP status is 200 by then), a refused one gets its HTTP status."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx
import pytest
from support.gateway_fixtures import RunningGateway, event_types, read_sse
from support.provider import SLOW
from support.rest import (
    api_error,
    assert_well_formed_sse,
    create_workflow,
    event_json,
    field_violations,
    final_execution,
    sse_messages,
    start_execution,
)
from support.runs import answer_spec, slow_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import execution_pb2_grpc
from agentflow_grpc.testing import FakeProviderServer


def assert_sse_response(status: int, headers: httpx.Headers, body: str) -> None:
    """A 200 event stream whose every message is one `data: {json}` line."""
    assert status == 200, body
    assert headers["content-type"].startswith("text/event-stream"), headers
    messages = sse_messages(body)
    assert messages
    for message in messages:
        assert message.startswith("data: "), message
        assert "\n" not in message, message
        assert isinstance(json.loads(message.removeprefix("data: ")), dict)


async def test_execute_streams_every_event_as_sse(runner: httpx.AsyncClient) -> None:
    workflow = await create_workflow(runner, answer_spec())
    stream = await read_sse(
        runner,
        "POST",
        "/v1/executions:execute",
        json_body={"workflow": workflow["name"], "inputs": {"question": "why?"}},
    )
    assert_sse_response(stream.status, stream.headers, stream.body)
    assert stream.headers["x-request-id"]
    events = stream.events
    assert len(events) == len(sse_messages(stream.body))
    assert_well_formed_sse(events)
    types = event_types(events)
    assert types[:4] == ["execution_started", "node_started", "node_completed", "node_started"]
    assert types[-2:] == ["node_completed", "execution_completed"]
    assert events[-1]["data"]["outputs"] == {"answer": "Echo: Answer: why?"}

    tokens = [event for event in events if event["type"] == "node_token"]
    assert len(tokens) > 1  # the fake provider streams its reply in pieces
    assert {(event["node_id"], event["attempt"]) for event in tokens} == {("reply", 1)}
    assert "".join(event["data"]["text"] for event in tokens) == "Echo: Answer: why?"

    execution = await final_execution(runner, events[0]["execution"])
    assert execution["state"] == "STATE_COMPLETED"
    assert execution["last_sequence"] == events[-1]["sequence"] == str(len(events))


async def test_an_sse_stream_has_the_events_of_the_grpc_stream_of_the_same_run(
    gateway: RunningGateway, runner: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=0.5)  # both followers join while it runs
    started = await start_execution(runner, spec=slow_spec())
    name = started["name"]

    async def over_grpc(after: int = 0) -> list[dict[str, Any]]:
        async with gateway.api.channel() as channel:
            stub = execution_pb2_grpc.ExecutionServiceStub(channel)
            call = stub.StreamExecution(
                ex.StreamExecutionRequest(name=name, after_sequence=after),
                metadata=gateway.api.metadata(),
            )
            return [event_json(event) async for event in call]

    sse, grpc_events = await asyncio.gather(
        read_sse(runner, "GET", f"/v1/{name}:stream"), over_grpc()
    )
    assert_sse_response(sse.status, sse.headers, sse.body)
    assert_well_formed_sse(sse.events)
    assert sse.events[-1]["type"] == "execution_completed"
    assert {event["execution"] for event in sse.events} == {name}
    assert sse.events == grpc_events  # sequence, type, node_id, attempt, data, time: all
    assert set(sse.events[0]) == {
        "execution",
        "sequence",
        "time",
        "type",
        "node_id",
        "attempt",
        "data",
    }

    # The recorded run, streamed again, is the same; after_sequence resumes after it.
    replayed = await read_sse(runner, "GET", f"/v1/{name}:stream")
    assert replayed.events == sse.events
    resumed = await read_sse(runner, "GET", f"/v1/{name}:stream?after_sequence=3")
    assert_sse_response(resumed.status, resumed.headers, resumed.body)
    assert resumed.events == sse.events[3:]
    assert resumed.events[0]["sequence"] == "4"
    assert resumed.events == await over_grpc(after=3)
    past_the_end = await read_sse(runner, "GET", f"/v1/{name}:stream?after_sequence=1000")
    assert (past_the_end.status, past_the_end.events) == (200, [])


async def test_a_failed_run_ends_its_sse_stream_with_an_error_event(
    runner: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    # A 400 from the provider is the client's error: not retried, the node and the run fail.
    provider.add_rule(contains="refuse", status=400, message="no, thanks")
    spec = answer_spec(prompt="refuse {{ inputs.question }}")
    stream = await read_sse(
        runner,
        "POST",
        "/v1/executions:execute",
        json_body={"spec": spec, "inputs": {"question": "q"}},
    )
    assert_sse_response(stream.status, stream.headers, stream.body)
    assert_well_formed_sse(stream.events)
    last = stream.events[-1]
    assert last["type"] == "execution_failed"  # the stream's end says so: never silence
    assert last["data"]["error"]["code"] == "provider.rejected", last
    assert last["data"]["error"]["node_id"] == "reply"
    assert "no, thanks" in last["data"]["error"]["message"]
    assert stream.body.endswith("\n\n")  # a whole last message, not a stream cut off
    failed_nodes = [event for event in stream.events if event["type"] == "node_failed"]
    assert [(e["node_id"], e["data"]["will_retry"]) for e in failed_nodes] == [("reply", False)]

    execution = await final_execution(runner, last["execution"])
    assert execution["state"] == "STATE_FAILED"
    assert execution["error"]["code"] == "provider.rejected"
    followed = await read_sse(runner, "GET", f"/v1/{last['execution']}:stream")
    assert followed.events == stream.events


async def test_a_run_refused_before_it_starts_is_a_json_error_not_a_stream(
    gateway: RunningGateway, runner: httpx.AsyncClient
) -> None:
    missing = await runner.post(
        "/v1/executions:execute", json={"spec": answer_spec(), "inputs": {}}
    )
    body = api_error(missing, 400, 3, "invalid_inputs")
    assert field_violations(body) == [("inputs/question", "input.missing")]

    spec = answer_spec()
    spec["nodes"][1]["source"] = "nowhere"
    unknown_source = await runner.post(
        "/v1/executions:execute", json={"spec": spec, "inputs": {"question": "q"}}
    )
    body = api_error(unknown_source, 400, 3, "invalid_spec")
    assert field_violations(body) == [("spec/nodes/1/source", "source.unknown")]

    not_found = await runner.get("/v1/executions/00000000-0000-4000-8000-000000000000:stream")
    api_error(not_found, 404, 5, "not_found")
    async with gateway.client(None) as anonymous:
        no_key = await anonymous.post(
            "/v1/executions:execute", json={"spec": answer_spec(), "inputs": {"question": "q"}}
        )
        api_error(no_key, 401, 16, "unauthenticated")
    listed = await runner.get("/v1/executions")
    assert listed.json()["executions"] == []  # nothing was started


async def test_a_cancelled_background_run_ends_its_followers_sse_stream(
    runner: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    started = await start_execution(runner, spec=slow_spec())
    reply_started = asyncio.Event()

    async def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "node_started" and event["node_id"] == "reply":
            reply_started.set()

    follower = asyncio.create_task(
        read_sse(runner, "GET", f"/v1/{started['name']}:stream", on_event=on_event)
    )
    await asyncio.wait_for(reply_started.wait(), timeout=5)
    cancelled = await runner.post(f"/v1/{started['name']}:cancel", json={})
    assert cancelled.json()["state"] == "STATE_CANCELLED"
    stream = await asyncio.wait_for(follower, timeout=5)
    assert_sse_response(stream.status, stream.headers, stream.body)
    assert_well_formed_sse(stream.events)
    assert stream.events[-1]["type"] == "execution_cancelled"
    assert stream.events[-1]["data"]["interrupted_nodes"] == ["reply"]


# The one long test of the suite: a stream that stays quiet for more than 30 s (a common idle
# limit of proxies and clients) must stay open through Envoy and end with its terminal event.
@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_an_sse_stream_stays_open_through_a_32_second_silence(
    runner: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    silence = 32.0
    provider.add_rule(contains="[silent]", delay=silence)
    spec = answer_spec(prompt="[silent] {{ inputs.question }}")
    spec["nodes"][1]["timeout"] = 90  # the API fixture's node_timeout is 30 s
    arrivals: list[tuple[float, str]] = []

    async def on_event(event: dict[str, Any]) -> None:
        arrivals.append((time.monotonic(), event["type"]))

    # read_sse reads with no read timeout, as `curl -N` does.
    stream = await read_sse(
        runner,
        "POST",
        "/v1/executions:execute",
        json_body={"spec": spec, "inputs": {"question": "still there?"}},
        on_event=on_event,
    )
    assert_sse_response(stream.status, stream.headers, stream.body)
    assert_well_formed_sse(stream.events)
    assert stream.events[-1]["type"] == "execution_completed"
    assert stream.events[-1]["data"]["outputs"] == {"answer": "Echo: [silent] still there?"}
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(arrivals)]
    longest = max(range(len(gaps)), key=gaps.__getitem__)
    assert gaps[longest] >= silence - 1, gaps  # the silence was real, and the stream held
    assert arrivals[longest][1] == "node_started"  # …while the LLM node was thinking
