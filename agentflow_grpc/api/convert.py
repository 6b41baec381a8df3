"""Domain records ↔ protobuf messages: the one place the API translates.

JSON documents (specs, inputs, outputs, event data) travel as google.protobuf.Struct. A Struct
holds numbers as doubles, so a whole number comes back as 3.0; `struct_to_dict` returns whole
numbers (below 2**53) as ints again, which is what JSON means by them and what the strict spec
models expect.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from agentflow_grpc._gen.agentflow.v1 import (
    common_pb2,
    execution_pb2,
    source_pb2,
    workflow_pb2,
)
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.events import ExecutionEvent, TokenUsage
from agentflow_grpc.model.records import (
    Execution,
    ExecutionStatus,
    StoredSource,
    Workflow,
    WorkflowVersion,
)
from agentflow_grpc.services.run_profiles import RunProfile
from agentflow_grpc.services.traces import NodeTrace
from agentflow_grpc.spec import ValidationResult, Violation

_SAFE_INTEGER = 2**53

STATE_OF_STATUS = {
    ExecutionStatus.PENDING: execution_pb2.Execution.STATE_PENDING,
    ExecutionStatus.RUNNING: execution_pb2.Execution.STATE_RUNNING,
    ExecutionStatus.COMPLETED: execution_pb2.Execution.STATE_COMPLETED,
    ExecutionStatus.FAILED: execution_pb2.Execution.STATE_FAILED,
    ExecutionStatus.CANCELLED: execution_pb2.Execution.STATE_CANCELLED,
}
STATUS_OF_STATE = {state: status for status, state in STATE_OF_STATUS.items()}


# --- names ---


def name_of(collection: str, resource_id: uuid.UUID) -> str:
    return f"{collection}/{resource_id}"


def id_from_name(name: str, collection: str, *, field: str = "name") -> uuid.UUID:
    """The id in `collections/{id}`; InvalidArgumentError naming `field` otherwise."""
    prefix, _, text = name.partition("/")
    try:
        if prefix != collection or not text:
            raise ValueError(name)
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgumentError(
            f"{field} must be `{collection}/<id>`, got {name[:100]!r}", field=field
        ) from None


# --- JSON documents ---


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return _whole_numbers(json_format.MessageToDict(struct))  # type: ignore[no-any-return]


def dict_to_struct(document: Mapping[str, Any] | None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if document:
        struct.update(_json_ready(document))
    return struct


def python_to_value(value: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(_json_ready(value), message)
    return message


# Made once: json.dumps/loads with options build an encoder and a decoder per call (~4 µs, once
# per event streamed).
_ENCODE = json.JSONEncoder(default=str, allow_nan=True).encode
_DECODE = json.JSONDecoder(parse_constant=lambda _: None).decode


def _json_ready(value: Any) -> Any:
    """Plain JSON values (datetimes and other objects as strings, NaN and infinities as null)."""
    return _DECODE(_ENCODE(value))


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < _SAFE_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


# --- times ---


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment.astimezone(UTC))
    return message


def datetime_of(message: timestamp_pb2.Timestamp, *, field: str) -> datetime | None:
    """None for an unset timestamp (zero); InvalidArgumentError beyond years 1-9999."""
    if message.seconds == 0 and message.nanos == 0:
        return None
    try:
        return message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgumentError(f"{field} is outside the years 1 to 9999", field=field) from None


# --- resources ---


def usage_to_proto(usage: TokenUsage) -> common_pb2.TokenUsage:
    return common_pb2.TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cached_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


def violation_to_proto(violation: Violation) -> common_pb2.Violation:
    return common_pb2.Violation(
        path=violation.path, code=violation.code.value, message=violation.message
    )


def validation_to_proto(result: ValidationResult) -> workflow_pb2.ValidateWorkflowResponse:
    return workflow_pb2.ValidateWorkflowResponse(
        valid=result.ok,
        violations=[violation_to_proto(v) for v in result.violations],
        node_count=len(result.spec.nodes) if result.spec else 0,
        edge_count=len(result.spec.edges) if result.spec else 0,
        warnings=[violation_to_proto(w) for w in result.warnings],
    )


def workflow_to_proto(workflow: Workflow) -> workflow_pb2.Workflow:
    return workflow_pb2.Workflow(
        name=name_of("workflows", workflow.id),
        spec=dict_to_struct(workflow.spec),
        spec_name=workflow.name,
        version=workflow.version,
        spec_hash=workflow.spec_hash,
        etag=workflow.etag,
        create_time=timestamp(workflow.created_at),
        update_time=timestamp(workflow.updated_at),
        delete_time=timestamp(workflow.deleted_at),
        creator=workflow.created_by,
        updater=workflow.updated_by,
    )


def version_to_proto(version: WorkflowVersion) -> workflow_pb2.WorkflowVersion:
    return workflow_pb2.WorkflowVersion(
        name=f"{name_of('workflows', version.workflow_id)}/versions/{version.version}",
        version=version.version,
        spec=dict_to_struct(version.spec),
        spec_hash=version.spec_hash,
        create_time=timestamp(version.created_at),
        creator=version.created_by,
    )


def source_to_proto(source: StoredSource) -> source_pb2.Source:
    """Secrets never leave: the message names them (`secret_names`) and holds no values."""
    return source_pb2.Source(
        name=name_of("sources", source.id),
        display_name=source.name,
        type=source.type,
        description=source.description,
        config=dict_to_struct(source.config),
        secret_names=list(source.secret_names),
        etag=source.etag,
        create_time=timestamp(source.created_at),
        update_time=timestamp(source.updated_at),
        delete_time=timestamp(source.deleted_at),
        creator=source.created_by,
        updater=source.updated_by,
    )


def error_to_proto(error: Mapping[str, Any] | None) -> execution_pb2.ExecutionError | None:
    if not error:
        return None
    return execution_pb2.ExecutionError(
        code=str(error.get("code") or ""),
        message=str(error.get("message") or ""),
        node_id=str(error.get("node_id") or ""),
    )


def execution_to_proto(
    execution: Execution, trace: list[NodeTrace] | None = None, profile: RunProfile | None = None
) -> execution_pb2.Execution:
    message = execution_pb2.Execution(
        name=name_of("executions", execution.id),
        workflow=name_of("workflows", execution.workflow_id) if execution.workflow_id else "",
        workflow_version=execution.workflow_version or 0,
        spec_hash=execution.spec_hash,
        state=STATE_OF_STATUS[execution.status],
        inputs=dict_to_struct(execution.inputs),
        outputs=dict_to_struct(execution.outputs) if execution.outputs is not None else None,
        error=error_to_proto(execution.error),
        usage=usage_to_proto(execution.usage),
        last_sequence=execution.last_sequence,
        create_time=timestamp(execution.created_at),
        start_time=timestamp(execution.started_at),
        end_time=timestamp(execution.finished_at),
        duration_ms=execution.duration_ms or 0.0,
        creator=execution.created_by,
        trace_id=execution.trace_id or "",
        profile=profile_to_proto(profile) if profile is not None else None,
    )
    for node in trace or ():
        message.trace.append(trace_to_proto(node))
    return message


def trace_to_proto(node: NodeTrace) -> execution_pb2.NodeTrace:
    return execution_pb2.NodeTrace(
        node_id=node.node_id,
        node_type=node.node_type,
        status=node.status,
        usage=usage_to_proto(node.usage),
        attempts=[
            execution_pb2.NodeAttempt(
                attempt=attempt.attempt,
                status=attempt.status,
                start_time=timestamp(attempt.started_at),
                end_time=timestamp(attempt.finished_at),
                duration_ms=attempt.duration_ms or 0.0,
                output=python_to_value(attempt.output),
                error=error_to_proto(attempt.error),
                will_retry=attempt.will_retry,
                usage=usage_to_proto(attempt.usage) if attempt.usage else None,
                streamed_text=attempt.streamed_text,
                provider_first_token_ms=attempt.provider_first_token_ms or 0.0,
                provider_ms=attempt.provider_ms or 0.0,
            )
            for attempt in node.attempts
        ],
    )


def profile_to_proto(profile: RunProfile) -> execution_pb2.ExecutionProfile:
    return execution_pb2.ExecutionProfile(
        queue_wait_ms=profile.queue_wait_ms,
        wall_ms=profile.wall_ms,
        nodes_ms=profile.nodes_ms,
        engine_ms=profile.engine_ms,
        provider_ms=profile.provider_ms,
        event_log_ms=profile.event_log_ms,
    )


def event_to_proto(event: ExecutionEvent) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(
        execution=f"executions/{event.execution_id}",
        sequence=event.sequence,
        time=timestamp(event.timestamp),
        type=event.type.value,
        node_id=event.node_id or "",
        attempt=event.attempt or 0,
        data=dict_to_struct(event.data),
    )
