"""A run's completion webhook, made in the transaction that stores the run's terminal event.

`record_delivery` reads the ended execution and its whole event log in that transaction (a
resumed run's earlier events too), builds the payload and stores a pending delivery
(storage/webhooks.py), so a server that dies right after the run ended loses no webhook; a
dispatcher on any replica sends it (services/webhook_dispatcher.py). The payload has the
Standard Webhooks shape, `{"type", "timestamp", "data"}`, its `data` the execution summary with
the per-node trace as GetExecution builds it (services/traces.py), in the API's field names.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from agentflow_grpc.model.events import EventType
from agentflow_grpc.model.records import Execution
from agentflow_grpc.services.traces import NodeTrace, build_trace
from agentflow_grpc.storage import executions as execution_store
from agentflow_grpc.storage import webhooks as store
from agentflow_grpc.storage.database import Connection

EVENT_TYPES = {
    EventType.EXECUTION_COMPLETED: "execution.completed",
    EventType.EXECUTION_FAILED: "execution.failed",
    EventType.EXECUTION_CANCELLED: "execution.cancelled",
}


async def record_delivery(
    connection: Connection, tenant_id: uuid.UUID, execution_id: uuid.UUID, source_id: uuid.UUID
) -> uuid.UUID:
    """Store the webhook of an execution whose terminal event this transaction has stored."""
    execution = await execution_store.get(connection, tenant_id, execution_id)
    events = await execution_store.list_events(connection, tenant_id, execution_id)
    end = events[-1]
    assert end.is_terminal, "a webhook is recorded with the event that ends the run"
    event_type = EVENT_TYPES[end.type]
    return await store.create_delivery(
        connection,
        tenant_id,
        execution_id=execution_id,
        source_id=source_id,
        event_type=event_type,
        payload=completion_payload(event_type, execution, build_trace(events), end.timestamp),
    )


def completion_payload(
    event_type: str, execution: Execution, trace: list[NodeTrace], ended_at: datetime
) -> dict[str, Any]:
    """The body of a run's completion webhook."""
    return {
        "type": event_type,
        "timestamp": ended_at.isoformat(),
        "data": {
            "execution": f"executions/{execution.id}",
            "workflow": f"workflows/{execution.workflow_id}" if execution.workflow_id else "",
            "workflow_version": execution.workflow_version or 0,
            "status": execution.status.value,
            "outputs": execution.outputs,
            "error": execution.error,
            "usage": execution.usage.to_dict(),
            "models": execution.model_usage,
            "duration_ms": execution.duration_ms,
            "create_time": _time(execution.created_at),
            "start_time": _time(execution.started_at),
            "end_time": _time(execution.finished_at),
            "trace_id": execution.trace_id or "",
            "trace": [_node(node) for node in trace],
        },
    }


def _node(node: NodeTrace) -> dict[str, Any]:
    return {
        "node_id": node.node_id,
        "node_type": node.node_type,
        "status": node.status,
        "usage": node.usage.to_dict(),
        "attempts": [
            {
                "attempt": attempt.attempt,
                "status": attempt.status,
                "start_time": _time(attempt.started_at),
                "end_time": _time(attempt.finished_at),
                "duration_ms": attempt.duration_ms,
                "output": attempt.output,
                "error": attempt.error,
                "will_retry": attempt.will_retry,
                "usage": attempt.usage.to_dict() if attempt.usage else None,
                "streamed_text": attempt.streamed_text,
                "provider_ms": attempt.provider_ms,
                "provider_first_token_ms": attempt.provider_first_token_ms,
            }
            for attempt in node.attempts
        ],
    }


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
