"""Typed asyncio client for the AgentFlow gRPC API (agentflow.v1).

The messages are betterproto2 dataclasses and the stubs grpclib clients, generated from protos/
into `agentflow_client._gen` by scripts/generate_protos.py. `connect` opens a channel that sends
the API key with every call:

    async with connect("localhost:50051", api_key="...") as channel:
        health = await HealthServiceStub(channel).get_health(GetHealthRequest())

Timestamps are timezone-aware `datetime`s; a `Struct` is built with `Struct.from_dict(obj)` and
read with `struct.to_dict()` (JSON numbers come back as floats).
"""

from __future__ import annotations

import ssl as _ssl

from grpclib.client import Channel
from grpclib.events import SendRequest, listen

from agentflow_client._gen.agentflow.v1 import (
    CancelExecutionRequest,
    CreateSourceRequest,
    CreateWorkflowRequest,
    DeleteSourceRequest,
    DeleteWorkflowRequest,
    DependencyHealth,
    DisconnectPolicy,
    ErrorGroup,
    ErrorOccurrence,
    ExecuteWorkflowRequest,
    Execution,
    ExecutionError,
    ExecutionEvent,
    ExecutionProfile,
    ExecutionServiceStub,
    ExecutionState,
    ExecutionSummary,
    GetErrorGroupRequest,
    GetExecutionRequest,
    GetHealthRequest,
    GetHealthResponse,
    GetSourceRequest,
    GetStatsRequest,
    GetWorkflowRequest,
    HealthServiceStub,
    ListErrorGroupsRequest,
    ListErrorGroupsResponse,
    ListExecutionsRequest,
    ListExecutionsResponse,
    ListSourcesRequest,
    ListSourcesResponse,
    ListWebhookDeliveriesRequest,
    ListWebhookDeliveriesResponse,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    ListWorkflowVersionsRequest,
    ListWorkflowVersionsResponse,
    ModelUsage,
    NodeAttempt,
    NodeTrace,
    ObservabilityServiceStub,
    ProfileServerRequest,
    ProfileServerRequestFormat,
    ServerProfile,
    Source,
    SourceServiceStub,
    StartExecutionRequest,
    Stats,
    StatsBucket,
    StreamExecutionRequest,
    TestSourceRequest,
    TestSourceResponse,
    TokenUsage,
    UpdateSourceRequest,
    UpdateWorkflowRequest,
    ValidateWorkflowRequest,
    ValidateWorkflowResponse,
    Violation,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryState,
    Workflow,
    WorkflowServiceStub,
    WorkflowVersion,
)
from agentflow_client._gen.google.protobuf import FieldMask, ListValue, NullValue, Struct, Value

__all__ = [
    "API_KEY_METADATA",
    "CancelExecutionRequest",
    "CreateSourceRequest",
    "CreateWorkflowRequest",
    "DeleteSourceRequest",
    "DeleteWorkflowRequest",
    "DependencyHealth",
    "DisconnectPolicy",
    "ErrorGroup",
    "ErrorOccurrence",
    "ExecuteWorkflowRequest",
    "Execution",
    "ExecutionError",
    "ExecutionEvent",
    "ExecutionProfile",
    "ExecutionServiceStub",
    "ExecutionState",
    "ExecutionSummary",
    "FieldMask",
    "GetErrorGroupRequest",
    "GetExecutionRequest",
    "GetHealthRequest",
    "GetHealthResponse",
    "GetSourceRequest",
    "GetStatsRequest",
    "GetWorkflowRequest",
    "HealthServiceStub",
    "ListErrorGroupsRequest",
    "ListErrorGroupsResponse",
    "ListExecutionsRequest",
    "ListExecutionsResponse",
    "ListSourcesRequest",
    "ListSourcesResponse",
    "ListValue",
    "ListWebhookDeliveriesRequest",
    "ListWebhookDeliveriesResponse",
    "ListWorkflowVersionsRequest",
    "ListWorkflowVersionsResponse",
    "ListWorkflowsRequest",
    "ListWorkflowsResponse",
    "ModelUsage",
    "NodeAttempt",
    "NodeTrace",
    "NullValue",
    "ObservabilityServiceStub",
    "ProfileServerRequest",
    "ProfileServerRequestFormat",
    "ServerProfile",
    "Source",
    "SourceServiceStub",
    "StartExecutionRequest",
    "Stats",
    "StatsBucket",
    "StreamExecutionRequest",
    "Struct",
    "TestSourceRequest",
    "TestSourceResponse",
    "TokenUsage",
    "UpdateSourceRequest",
    "UpdateWorkflowRequest",
    "ValidateWorkflowRequest",
    "ValidateWorkflowResponse",
    "Value",
    "Violation",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryState",
    "Workflow",
    "WorkflowServiceStub",
    "WorkflowVersion",
    "connect",
]

API_KEY_METADATA = "x-api-key"
"""The metadata key that carries the API key."""


def connect(
    target: str, api_key: str | None = None, *, ssl: bool | _ssl.SSLContext = False
) -> Channel:
    """A grpclib channel to `target` (`host:port`, `[ipv6]:port`) that sends `api_key` as
    `x-api-key` metadata on every call of every stub built on it, unless the call's own metadata
    has one. `ssl=True` verifies the server with the default CA certificates; an `SSLContext` is
    used as given. Call it in the event loop that will use the channel (grpclib binds the channel
    to it); the channel connects on the first call. Close it with `channel.close()` or use it as
    `async with connect(...) as channel:`."""
    host, separator, port = target.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"target must be host:port, not {target!r}")
    channel = Channel(host.removeprefix("[").removesuffix("]"), int(port), ssl=ssl or None)
    if api_key is not None:

        async def attach_api_key(event: SendRequest) -> None:
            if API_KEY_METADATA not in event.metadata:
                event.metadata[API_KEY_METADATA] = api_key

        listen(channel, SendRequest, attach_api_key)
    return channel
