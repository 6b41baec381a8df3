"""The Python client (clients/python, `agentflow_client`): its public names, one stub method for
every RPC of protos/, and the same bytes on the wire as the server's protobuf classes."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from types import ModuleType

import agentflow_client
import pytest
from google.protobuf import json_format
from multidict import MultiDict

from agentflow_grpc._gen.agentflow.v1 import (
    common_pb2,
    execution_pb2,
    health_pb2,
    observability_pb2,
    source_pb2,
    workflow_pb2,
)

PROTO_MODULES: tuple[ModuleType, ...] = (
    common_pb2,
    execution_pb2,
    health_pb2,
    observability_pb2,
    source_pb2,
    workflow_pb2,
)

EXPECTED_EXPORTS = {
    # Stubs.
    "ExecutionServiceStub",
    "HealthServiceStub",
    "ObservabilityServiceStub",
    "SourceServiceStub",
    "WorkflowServiceStub",
    # agentflow.v1 messages and enums.
    "CancelExecutionRequest",
    "CreateSourceRequest",
    "CreateWorkflowRequest",
    "DeleteSourceRequest",
    "DeleteWorkflowRequest",
    "DependencyHealth",
    "ExecuteWorkflowRequest",
    "Execution",
    "ExecutionError",
    "ExecutionEvent",
    "ExecutionState",
    "GetExecutionRequest",
    "GetHealthRequest",
    "GetHealthResponse",
    "GetSourceRequest",
    "GetWorkflowRequest",
    "ListExecutionsRequest",
    "ListExecutionsResponse",
    "ListSourcesRequest",
    "ListSourcesResponse",
    "ListWorkflowVersionsRequest",
    "ListWorkflowVersionsResponse",
    "ListWorkflowsRequest",
    "ListWorkflowsResponse",
    "NodeAttempt",
    "NodeTrace",
    "Source",
    "StartExecutionRequest",
    "StreamExecutionRequest",
    "TestSourceRequest",
    "TestSourceResponse",
    "TokenUsage",
    "UpdateSourceRequest",
    "UpdateWorkflowRequest",
    "ValidateWorkflowRequest",
    "ValidateWorkflowResponse",
    "Violation",
    "Workflow",
    "WorkflowVersion",
    "ErrorGroup",
    "ErrorOccurrence",
    "ExecutionProfile",
    "ExecutionSummary",
    "GetErrorGroupRequest",
    "GetStatsRequest",
    "ListErrorGroupsRequest",
    "ListErrorGroupsResponse",
    "ModelUsage",
    "ProfileServerRequest",
    "ProfileServerRequestFormat",
    "ServerProfile",
    "Stats",
    "StatsBucket",
    "DisconnectPolicy",
    "ListWebhookDeliveriesRequest",
    "ListWebhookDeliveriesResponse",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryState",
    # The google.protobuf types that requests are built from.
    "FieldMask",
    "ListValue",
    "NullValue",
    "Struct",
    "Value",
    # Helpers.
    "API_KEY_METADATA",
    "connect",
}

SPEC = {
    "name": "support-triage",
    "version": 2,
    "nodes": [{"id": "classify", "retries": 3, "config": {"temperature": 0.25}}],
    "enabled": True,
    "description": None,
    "tags": ["a", "b"],
}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def services() -> list:
    return [
        service
        for module in PROTO_MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
    ]


def test_exports_are_exactly_the_expected_names() -> None:
    assert set(agentflow_client.__all__) == EXPECTED_EXPORTS
    assert len(agentflow_client.__all__) == len(EXPECTED_EXPORTS)
    for name in EXPECTED_EXPORTS:
        assert getattr(agentflow_client, name) is not None, name


def test_every_message_and_enum_of_the_protos_is_exported() -> None:
    names = set()
    for module in PROTO_MODULES:
        names |= set(module.DESCRIPTOR.message_types_by_name)
        names |= set(module.DESCRIPTOR.enum_types_by_name)
    assert names <= set(agentflow_client.__all__)
    for name in names:
        client_class = getattr(agentflow_client, name)
        assert client_class.__module__ == "agentflow_client._gen.agentflow.v1", name


def test_every_rpc_has_a_stub_method_of_the_same_cardinality() -> None:
    stubs = {name for name in agentflow_client.__all__ if name.endswith("ServiceStub")}
    assert stubs == {f"{service.name}Stub" for service in services()}
    for service in services():
        stub = getattr(agentflow_client, f"{service.name}Stub")
        expected = {snake_case(method.name): method for method in service.methods}
        assert {name for name in vars(stub) if not name.startswith("_")} == set(expected)
        for name, method in expected.items():
            function = getattr(stub, name)
            assert not method.client_streaming, method.full_name
            if method.server_streaming:
                assert inspect.isasyncgenfunction(function), method.full_name
            else:
                assert inspect.iscoroutinefunction(function), method.full_name
            route = f"/{service.full_name}/{method.name}"
            assert route in inspect.getsource(function), method.full_name


def test_workflow_round_trips_between_the_client_and_the_server_classes() -> None:
    created = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    sent = agentflow_client.Workflow(
        name="workflows/0190f0e4",
        spec=agentflow_client.Struct.from_dict(SPEC),
        spec_name="support-triage",
        version=2,
        etag="W/2",
        create_time=created,
        update_time=created,
        creator="users/ada",
    )

    received = workflow_pb2.Workflow.FromString(bytes(sent))

    assert received.name == "workflows/0190f0e4"
    assert received.spec_name == "support-triage"
    assert received.version == 2
    assert received.etag == "W/2"
    assert received.creator == "users/ada"
    assert json_format.MessageToDict(received.spec) == SPEC
    assert received.create_time.ToDatetime(tzinfo=UTC) == created
    assert received.update_time.ToDatetime(tzinfo=UTC) == created
    assert not received.HasField("delete_time")

    deleted = datetime(2026, 3, 5, tzinfo=UTC)
    received.delete_time.FromDatetime(deleted)
    received.spec["nodes"][0]["retries"] = 4
    back = agentflow_client.Workflow.parse(received.SerializeToString())

    assert back.name == sent.name
    assert back.version == 2
    assert back.create_time == created
    assert back.delete_time == deleted
    assert back.spec is not None
    spec = back.spec.to_dict()
    assert spec["nodes"][0]["retries"] == 4  # JSON numbers come back as floats: 4.0
    assert {key: value for key, value in spec.items() if key != "nodes"} == {
        key: value for key, value in SPEC.items() if key != "nodes"
    }
    assert bytes(agentflow_client.Workflow.parse(bytes(back))) == bytes(back)


def test_server_event_data_reads_as_a_dict_on_the_client() -> None:
    event = execution_pb2.ExecutionEvent(sequence=7, type="node_completed", node_id="classify")
    event.time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    event.data.update({"output": {"label": "billing", "scores": [0.9, 0.1]}, "error": None})

    parsed = agentflow_client.ExecutionEvent.parse(event.SerializeToString())

    assert (parsed.sequence, parsed.type, parsed.node_id) == (7, "node_completed", "classify")
    assert parsed.time == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed.data is not None
    assert parsed.data.to_dict() == {
        "output": {"label": "billing", "scores": [0.9, 0.1]},
        "error": None,
    }
    assert agentflow_client.ExecutionEvent.parse(b"").data is None


def test_field_mask_and_value_round_trip() -> None:
    request = agentflow_client.UpdateWorkflowRequest(
        workflow=agentflow_client.Workflow(name="workflows/1", etag="W/1"),
        update_mask=agentflow_client.FieldMask(paths=["spec", "etag"]),
    )
    received = workflow_pb2.UpdateWorkflowRequest.FromString(bytes(request))
    assert list(received.update_mask.paths) == ["spec", "etag"]

    attempt = execution_pb2.NodeAttempt()
    attempt.output.string_value = "done"
    output = agentflow_client.NodeAttempt.parse(attempt.SerializeToString()).output
    assert output == agentflow_client.Value(string_value="done")
    assert output is not None
    assert output.to_dict() == "done"


@pytest.mark.parametrize("target", ["localhost", "localhost:", ":50051", "localhost:port"])
def test_connect_rejects_a_target_without_host_and_port(target: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        agentflow_client.connect(target)


async def test_connect_builds_a_channel_without_connecting() -> None:
    channel = agentflow_client.connect("[::1]:50051", api_key="key")
    try:
        assert (channel._host, channel._port) == ("::1", 50051)
    finally:
        channel.close()


@pytest.mark.parametrize(
    ("api_key", "given", "sent"),
    [
        ("key-1", {}, {"x-api-key": "key-1"}),
        ("key-1", {"x-api-key": "per-call"}, {"x-api-key": "per-call"}),
        (None, {}, {}),
    ],
)
async def test_connect_adds_the_api_key_to_every_request(
    api_key: str | None, given: dict[str, str], sent: dict[str, str]
) -> None:
    # What grpclib's Stream does before it sends a request's headers (no server involved).
    channel = agentflow_client.connect("localhost:50051", api_key=api_key)
    try:
        (metadata,) = await channel.__dispatch__.send_request(
            MultiDict({"x-request-id": "r1", **given}),
            method_name="/agentflow.v1.HealthService/GetHealth",
            deadline=None,
            content_type="application/grpc+proto",
        )
    finally:
        channel.close()
    assert dict(metadata) == {"x-request-id": "r1", **sent}
