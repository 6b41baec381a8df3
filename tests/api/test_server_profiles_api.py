"""ObservabilityService.ProfileServer over gRPC and REST: a real server samples itself with
pyinstrument while a run goes on, and returns pyinstrument's HTML or speedscope's JSON; admins
only; the duration checked; one profile at a time; a cancelled call stops the sampler.
(docs/observability.md, "Server profiles".)

The server runs in the test's own process and event loop, so `pid` is the test's, and the
profiler object is at hand to see when it is busy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from pyinstrument.stack_sampler import get_stack_sampler
from support.api_fixtures import RunningApi
from support.api_helpers import (
    assert_invalid,
    client_of,
    create_openai_source,
    error_info,
    eventually,
    rich_status,
    rpc_error,
    struct,
)
from support.gateway_fixtures import RunningGateway
from support.rest import api_error, field_violations
from support.runs import answer_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import execution_pb2_grpc, observability_pb2_grpc
from agentflow_grpc._gen.agentflow.v1 import observability_pb2 as ob
from agentflow_grpc.model.records import Role
from agentflow_grpc.services.profiling import ServerProfiler
from agentflow_grpc.testing import FakeProviderServer

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
HTML = ob.ProfileServerRequest.FORMAT_HTML
SPEEDSCOPE = ob.ProfileServerRequest.FORMAT_SPEEDSCOPE


@pytest.fixture
async def stub(api: RunningApi) -> AsyncIterator[observability_pb2_grpc.ObservabilityServiceStub]:
    async with api.channel() as channel:
        yield observability_pb2_grpc.ObservabilityServiceStub(channel)


@pytest.fixture
def profiler(api: RunningApi) -> ServerProfiler:
    return api.server.app.profiler


def request(seconds: float | None, profile_format: Any = HTML) -> ob.ProfileServerRequest:
    message = ob.ProfileServerRequest(format=profile_format)
    if seconds is not None:
        message.duration.FromNanoseconds(round(seconds * 1e9))
    return message


def seconds_of(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


async def test_a_profile_taken_while_a_run_goes_on_is_pyinstrument_html_or_speedscope_json(
    api: RunningApi,
    stub: observability_pb2_grpc.ObservabilityServiceStub,
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(reply="a b c d e f g h i j k l m n o p", delay=0.2, chunk_delay=0.05)
    md = api.metadata()
    async with api.channel() as channel:
        executions = execution_pb2_grpc.ExecutionServiceStub(channel)
        await create_openai_source(client_of(channel), md, f"{provider.url}/v1")
        started = await executions.StartExecution(
            ex.StartExecutionRequest(
                spec=struct(answer_spec()), inputs=struct({"question": "why?"})
            ),
            metadata=md,
        )
        html = await stub.ProfileServer(request(0.5, HTML), metadata=md)
        speedscope = await stub.ProfileServer(request(0.5, SPEEDSCOPE), metadata=md)

        async def finished() -> ex.Execution | None:
            execution = await executions.GetExecution(
                ex.GetExecutionRequest(name=started.name), metadata=md
            )
            return execution if execution.state == ex.Execution.STATE_COMPLETED else None

        await eventually(finished, timeout=15)  # the run went on, unharmed

    assert html.content_type == "text/html"
    assert html.content.lstrip().startswith(b"<!DOCTYPE html>")
    assert b"pyinstrument" in html.content  # its page, with the session's data inside
    assert html.sample_count > 0
    assert seconds_of(html.duration) >= 0.5
    assert (html.pid, html.host) == (os.getpid(), socket.gethostname())

    assert speedscope.content_type == "application/json"
    document = json.loads(speedscope.content)
    assert document["$schema"] == SPEEDSCOPE_SCHEMA
    assert len(document["shared"]["frames"]) >= 1
    assert all("name" in frame for frame in document["shared"]["frames"])
    (timeline,) = document["profiles"]
    assert timeline["events"]
    assert speedscope.sample_count > 0


async def test_only_admins_may_profile_the_server(
    api: RunningApi, stub: observability_pb2_grpc.ObservabilityServiceStub
) -> None:
    for role in (Role.EDITOR, Role.RUNNER, Role.VIEWER):
        error = await rpc_error(stub.ProfileServer(request(0.1), metadata=api.metadata(role)))
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error.details()
        assert "admin" in (error.details() or "")


@pytest.mark.parametrize("seconds", [0.05, 0.0, -1.0, 61.0, 3600.0])
async def test_a_duration_outside_the_limits_is_invalid(
    api: RunningApi, stub: observability_pb2_grpc.ObservabilityServiceStub, seconds: float
) -> None:
    error = await rpc_error(stub.ProfileServer(request(seconds), metadata=api.metadata()))
    assert_invalid(error, "duration")
    assert "0.1 to 60 seconds" in (error.details() or "")


async def test_an_unknown_format_or_a_deadline_before_the_end_is_invalid(
    api: RunningApi, stub: observability_pb2_grpc.ObservabilityServiceStub
) -> None:
    md = api.metadata()
    assert_invalid(await rpc_error(stub.ProfileServer(request(0.1, 9), metadata=md)), "format")
    early = await rpc_error(stub.ProfileServer(request(30), metadata=md, timeout=2))
    assert_invalid(early, "duration")
    assert "deadline" in (early.details() or "")


async def test_one_profile_at_a_time_and_the_next_once_it_is_done(
    api: RunningApi,
    stub: observability_pb2_grpc.ObservabilityServiceStub,
    profiler: ServerProfiler,
) -> None:
    md = api.metadata()
    first = asyncio.ensure_future(stub.ProfileServer(request(1.5), metadata=md))
    await eventually(lambda: _async(profiler.busy))

    error = await rpc_error(stub.ProfileServer(request(0.1), metadata=md))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert error_info(error).reason == "profile.in_progress"
    assert 0 < seconds_of(retry_delay(error)) <= 1.5  # when the first one ends

    assert (await first).sample_count > 0
    assert not profiler.busy
    assert (await stub.ProfileServer(request(0.1), metadata=md)).sample_count > 0


async def test_a_cancelled_call_stops_the_sampler_at_once(
    api: RunningApi,
    stub: observability_pb2_grpc.ObservabilityServiceStub,
    profiler: ServerProfiler,
) -> None:
    call = stub.ProfileServer(request(30), metadata=api.metadata())
    await eventually(lambda: _async(profiler.busy))
    # The server samples the thread this test runs on: pyinstrument's sampler is on.
    assert get_stack_sampler().subscribers

    call.cancel()
    await eventually(lambda: _async(not profiler.busy), timeout=10)  # long before 30 s
    assert get_stack_sampler().subscribers == []
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (await stub.ProfileServer(request(0.1), metadata=api.metadata())).sample_count > 0


async def test_rest_returns_the_profile_as_base64_and_refuses_a_bad_duration(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as http:
        response = await http.post(
            "/v1/server:profile", json={"duration": "0.3s", "format": "FORMAT_SPEEDSCOPE"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["content_type"] == "application/json"
        document = json.loads(base64.b64decode(body["content"]))
        assert document["$schema"] == SPEEDSCOPE_SCHEMA
        assert document["shared"]["frames"]
        assert int(body["sample_count"]) > 0  # int64: a JSON string
        assert body["pid"] == os.getpid()
        assert float(body["duration"].removesuffix("s")) >= 0.3

        refused = await http.post("/v1/server:profile", json={"duration": "120s"})
        failed = api_error(refused, 400, 3, "invalid_argument")
        assert ("duration", "invalid_argument") in field_violations(failed)

    async with gateway.client(Role.VIEWER) as http:
        denied = await http.post("/v1/server:profile", json={"duration": "0.1s"})
        api_error(denied, 403, 7, "permission_denied")


async def _async(value: bool) -> bool:
    return value


def retry_delay(error: grpc.aio.AioRpcError) -> duration_pb2.Duration:
    for detail in rich_status(error).details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay
    raise AssertionError("no RetryInfo in the status")
