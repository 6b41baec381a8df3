"""Helpers for REST tests through the gateway: JSON error bodies and their google.rpc details,
resources created over REST, polling an execution, gRPC events in the JSON the gateway prints."""

from __future__ import annotations

from typing import Any

import httpx
from google.protobuf import json_format

from agentflow_grpc._gen.agentflow.v1 import execution_pb2
from agentflow_grpc.testing import FakeProviderServer
from support.api_helpers import eventually

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
DETAIL_TYPE = "type.googleapis.com/google.rpc."
FINAL_STATES = ("STATE_COMPLETED", "STATE_FAILED", "STATE_CANCELLED")
TERMINAL_TYPES = ("execution_completed", "execution_failed", "execution_cancelled")
SOURCE_SECRET = "sk-rest-secret-93bd1f"


# --- errors ---


def error_body(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """The JSON error of `response`, which must have HTTP `status` and gRPC `code`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str), body
    assert body["message"], body
    assert isinstance(body["details"], list), body
    return body


def details(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The `details[]` items of `body` of type google.rpc.`kind`, e.g. `BadRequest`."""
    return [item for item in body["details"] if item["@type"] == DETAIL_TYPE + kind]


def detail(body: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = details(body, kind)
    return found


def api_error(response: httpx.Response, status: int, code: int, reason: str) -> dict[str, Any]:
    """An error the API server made (not Envoy): ErrorInfo with `reason`, and a RequestInfo
    whose request id is the response's `x-request-id`."""
    body = error_body(response, status, code)
    info = detail(body, "ErrorInfo")
    assert (info["reason"], info["domain"]) == (reason, "agentflow.dev"), info
    request_id = response.headers["x-request-id"]
    assert request_id
    assert detail(body, "RequestInfo")["request_id"] == request_id
    assert info["metadata"]["request_id"] == request_id
    return body


def envoy_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """A reply Envoy made itself (no route, unreadable request, limits, timeouts)."""
    body = error_body(response, status, code)
    assert body["details"] == [], body
    return body


def field_violations(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) of every BadRequest field violation in the error body."""
    return [
        (violation["field"], violation["reason"])
        for bad_request in details(body, "BadRequest")
        for violation in bad_request["field_violations"]
    ]


# --- resources ---


async def create_openai_source(
    client: httpx.AsyncClient, provider: FakeProviderServer, name: str = "openai-main"
) -> dict[str, Any]:
    """POST /v1/sources: an `openai` source at the fake provider, with a secret API key."""
    response = await client.post(
        "/v1/sources",
        json={
            "display_name": name,
            "type": "openai",
            "config": {"base_url": f"{provider.url}/v1", "model": "fake-model"},
            "secrets": {"api_key": SOURCE_SECRET},
        },
    )
    assert response.status_code == 200, response.text
    assert SOURCE_SECRET not in response.text
    source: dict[str, Any] = response.json()
    return source


async def create_workflow(client: httpx.AsyncClient, spec: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/workflows", json={"spec": spec})
    assert response.status_code == 200, response.text
    workflow: dict[str, Any] = response.json()
    return workflow


async def start_execution(client: httpx.AsyncClient, **request: Any) -> dict[str, Any]:
    """POST /v1/executions: a background run (`workflow` or `spec`, and `inputs`)."""
    request.setdefault("inputs", {"question": "why?"})
    response = await client.post("/v1/executions", json=request)
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    assert execution["state"] in ("STATE_PENDING", "STATE_RUNNING"), execution
    return execution


async def final_execution(
    client: httpx.AsyncClient, name: str, timeout: float = 10.0
) -> dict[str, Any]:
    """GET /v1/{name}, polled until the run has ended (within `timeout` seconds)."""

    async def check() -> dict[str, Any] | None:
        response = await client.get(f"/v1/{name}")
        assert response.status_code == 200, response.text
        execution: dict[str, Any] = response.json()
        return execution if execution["state"] in FINAL_STATES else None

    return await eventually(check, timeout=timeout)


# --- events ---


def event_json(event: execution_pb2.ExecutionEvent) -> dict[str, Any]:
    """A gRPC event as the gateway prints it: proto field names, defaults too, int64 as
    strings (Struct numbers come out as floats, which compare equal to the JSON's ints)."""
    printed: dict[str, Any] = json_format.MessageToDict(
        event, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return printed


def assert_well_formed_sse(events: list[dict[str, Any]]) -> None:
    """One execution, sequences "1".."n" (int64: JSON strings) without gaps, started first,
    exactly one terminal event, last."""
    assert events, "no events"
    assert events[0]["type"] == "execution_started"
    assert len({event["execution"] for event in events}) == 1
    assert [event["sequence"] for event in events] == [str(n) for n in range(1, len(events) + 1)]
    terminal = [event["type"] in TERMINAL_TYPES for event in events]
    assert terminal.count(True) == 1, [event["type"] for event in events]
    assert terminal[-1], [event["type"] for event in events]


def sse_messages(body: str) -> list[str]:
    """The raw messages of an SSE body (apart by a blank line)."""
    return [message for message in body.replace("\r\n", "\n").split("\n\n") if message.strip()]
