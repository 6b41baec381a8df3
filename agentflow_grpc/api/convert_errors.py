"""Error groups ↔ protobuf messages (ObservabilityService's ListErrorGroups, GetErrorGroup, and
the stats dashboard's top groups)."""

from __future__ import annotations

import re
import uuid

from agentflow_grpc._gen.agentflow.v1 import observability_pb2
from agentflow_grpc.api.convert import name_of, timestamp
from agentflow_grpc.model.error_groups import ErrorGroup, ErrorOccurrence
from agentflow_grpc.model.errors import InvalidArgumentError

COLLECTION = "errorGroups"
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}$")


def error_group_name(fingerprint: str) -> str:
    return f"{COLLECTION}/{fingerprint}"


def fingerprint_from_name(name: str, *, field: str = "name") -> str:
    """The fingerprint in `errorGroups/{fingerprint}`; InvalidArgumentError naming `field`."""
    prefix, _, fingerprint = name.partition("/")
    if prefix != COLLECTION or not _FINGERPRINT.match(fingerprint):
        raise InvalidArgumentError(
            f"{field} must be `{COLLECTION}/<32 lowercase hex digits>`, got {name[:100]!r}",
            field=field,
        )
    return fingerprint


def error_group_to_proto(group: ErrorGroup) -> observability_pb2.ErrorGroup:
    return observability_pb2.ErrorGroup(
        name=error_group_name(group.fingerprint),
        code=group.code,
        node_type=group.node_type,
        kind=group.kind.value,
        message_pattern=group.message_pattern,
        sample_message=group.sample_message,
        stack=group.stack,
        count=group.count,
        first_seen_time=timestamp(group.first_seen_at),
        last_seen_time=timestamp(group.last_seen_at),
        workflows=[name_of("workflows", workflow_id) for workflow_id in group.workflow_ids],
        workflow_count=group.workflow_count,
        failed_execution_count=group.failed_execution_count,
        occurrences=[occurrence_to_proto(item) for item in group.occurrences],
    )


def occurrence_to_proto(occurrence: ErrorOccurrence) -> observability_pb2.ErrorOccurrence:
    return observability_pb2.ErrorOccurrence(
        execution=_name("executions", occurrence.execution_id),
        workflow=_name("workflows", occurrence.workflow_id),
        node_id=occurrence.node_id or "",
        attempt=occurrence.attempt or 0,
        kind=occurrence.kind.value,
        message=occurrence.message,
        time=timestamp(occurrence.occurred_at),
        method=occurrence.method or "",
        ended_execution=occurrence.ended_execution,
    )


def _name(collection: str, resource_id: uuid.UUID | None) -> str:
    return "" if resource_id is None else name_of(collection, resource_id)
