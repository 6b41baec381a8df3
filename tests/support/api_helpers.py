"""Helpers for API tests: the generated stubs on one channel, Structs, and error details.

The client is the server's own generated code (agentflow_grpc._gen) over a grpc.aio channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agentflow_grpc._gen.agentflow.v1 import (
    execution_pb2,
    execution_pb2_grpc,
    health_pb2_grpc,
    source_pb2,
    source_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]

State = execution_pb2.Execution.State
FINAL_STATES = (State.STATE_COMPLETED, State.STATE_FAILED, State.STATE_CANCELLED)


@dataclass
class Client:
    channel: grpc.aio.Channel
    workflows: workflow_pb2_grpc.WorkflowServiceStub
    sources: source_pb2_grpc.SourceServiceStub
    executions: execution_pb2_grpc.ExecutionServiceStub
    health: health_pb2_grpc.HealthServiceStub


def client_of(channel: grpc.aio.Channel) -> Client:
    return Client(
        channel,
        workflow_pb2_grpc.WorkflowServiceStub(channel),
        source_pb2_grpc.SourceServiceStub(channel),
        execution_pb2_grpc.ExecutionServiceStub(channel),
        health_pb2_grpc.HealthServiceStub(channel),
    )


# --- JSON documents ---


def struct(document: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(document)
    return message


def plain(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict (numbers as the floats a Struct holds)."""
    return json_format.MessageToDict(message)  # type: ignore[no-any-return]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def deep_struct_field(field: int, key: str, depth: int) -> bytes:
    """The wire bytes of message field `field`, a Struct {key: {"a": {"a": … true}}} nested
    `depth` objects deep. Encoded by hand: the Python protobuf runtime refuses to build a
    message that deep. Appended to a serialized request, it merges into that Struct field."""
    value = _varint(4 << 3) + b"\x01"  # Value.bool_value = true
    for name in ["a"] * depth + [key]:
        entry = _length_delimited(1, name.encode()) + _length_delimited(2, value)
        nested = _length_delimited(1, entry)  # Struct.fields map entry
        value = _length_delimited(5, nested)  # Value.struct_value
    return _length_delimited(field, nested)


# --- specs ---


def router_spec(name: str = "router-demo") -> dict[str, Any]:
    """A spec that needs no source: input → router (max_iterations 3) → one of two http nodes."""
    return {
        "api_version": "agentflow/v1",
        "name": name,
        "inputs": {"n": {"type": "integer", "default": 1}},
        "outputs": {
            "result": {"from": "nodes.hi.output if nodes.hi is defined else nodes.lo.output"}
        },
        "nodes": [
            {"id": "start", "type": "input"},
            {
                "id": "check",
                "type": "router",
                "config": {
                    "routes": [{"name": "big", "when": "inputs.n > 1"}],
                    "default": "small",
                    "max_iterations": 3,
                },
            },
            {"id": "hi", "type": "http", "config": {"url": "https://example.invalid/hi"}},
            {"id": "lo", "type": "http", "config": {"url": "https://example.invalid/lo"}},
        ],
        "edges": [
            {"from": "start", "to": "check"},
            {"from": "check", "to": "hi", "route": "big"},
            {"from": "check", "to": "lo", "route": "small"},
        ],
    }


def invalid_spec() -> dict[str, Any]:
    """Three violations: a bad name, an undeclared input in a template, a misspelt field."""
    spec = router_spec()
    spec["name"] = "Bad Name"
    spec["nodes"][2]["config"]["url"] = "https://example.invalid/{{ inputs.missing }}"
    spec["nodes"][3]["config"]["methd"] = "GET"
    return spec


INVALID_SPEC_VIOLATIONS = [
    ("/name", "schema.pattern"),
    ("/nodes/2/config/url", "template.unknown_input"),
    ("/nodes/3/config/methd", "schema.unknown_field"),
]


def echo_spec(name: str = "echo") -> dict[str, Any]:
    """The smallest runnable spec: one input node; output `n` is input `n` (default 1)."""
    return {
        "api_version": "agentflow/v1",
        "name": name,
        "inputs": {"n": {"type": "integer", "default": 1}},
        "outputs": {"n": {"from": "nodes.start.output.n"}},
        "nodes": [{"id": "start", "type": "input"}],
        "edges": [],
    }


# --- errors ---


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a unary call ends with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def stream_error(
    call: AsyncIterator[Any], *, before_any: bool = False
) -> tuple[list[Any], grpc.aio.AioRpcError]:
    """The messages a streaming call yields before it fails, and its error."""
    received: list[Any] = []

    async def drain() -> None:
        async for message in call:
            received.append(message)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await drain()
    if before_any:
        assert received == []
    return received, caught.value


def rich_status(error: grpc.aio.AioRpcError) -> Any:
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status in {error.code()}: {error.details()}"
    return status


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in rich_status(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo in the status")


def request_info(error: grpc.aio.AioRpcError) -> error_details_pb2.RequestInfo:
    for detail in rich_status(error).details:
        info = error_details_pb2.RequestInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no RequestInfo in the status")


def field_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """(field, reason) of every BadRequest field violation in the error."""
    found: list[tuple[str, str]] = []
    for detail in rich_status(error).details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found += [(v.field, v.reason) for v in bad_request.field_violations]
    return found


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    return [field for field, _ in field_violations(error)]


def assert_invalid(error: grpc.aio.AioRpcError, field: str) -> None:
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert field in violated_fields(error), field_violations(error)


# --- resources ---


async def create_workflow(
    client: Client, metadata: Metadata, spec: dict[str, Any] | None = None, **request: Any
) -> workflow_pb2.Workflow:
    workflow = workflow_pb2.Workflow(spec=struct(spec or router_spec()))
    return await client.workflows.CreateWorkflow(  # type: ignore[no-any-return]
        workflow_pb2.CreateWorkflowRequest(workflow=workflow, **request), metadata=metadata
    )


async def create_openai_source(
    client: Client, metadata: Metadata, base_url: str, *, name: str = "openai-main"
) -> source_pb2.Source:
    """An `openai` source at `base_url` (e.g. the fake provider's `…/v1`)."""
    source = source_pb2.Source(
        display_name=name,
        type="openai",
        config=struct({"base_url": base_url, "model": "fake-model"}),
        secrets={"api_key": "sk-api-test"},
    )
    return await client.sources.CreateSource(  # type: ignore[no-any-return]
        source_pb2.CreateSourceRequest(source=source), metadata=metadata
    )


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = 5.0, interval: float = 0.05
) -> T:
    """The first truthy result of `check()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)


def event_key(event: execution_pb2.ExecutionEvent) -> tuple[str, int, str, str, dict[str, Any]]:
    return (event.execution, event.sequence, event.type, event.node_id, plain(event.data))


def assert_well_formed(events: list[execution_pb2.ExecutionEvent]) -> None:
    """One execution, sequences 1..n without gaps, started first, exactly one terminal last."""
    assert events, "no events"
    assert events[0].type == "execution_started"
    assert len({event.execution for event in events}) == 1
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    terminal = [e.type.startswith("execution_") and e.type != "execution_started" for e in events]
    assert terminal.count(True) == 1
    assert terminal[-1]


def non_finite(document: dict[str, Any], key: str, value: float) -> struct_pb2.Struct:
    """`document` as a Struct with `key` set to NaN or an infinity (JSON has neither)."""
    message = struct(document)
    message[key] = value
    return message


async def refused_cleanly(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The call fails with INVALID_ARGUMENT: a client's mistake, never INTERNAL."""
    error = await rpc_error(call)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    return error
