"""A run's failures as error-group occurrences, found in its events as they are stored.

`RunFailures.occurrences(events)` reads a batch of a run's events (docs/observability.md,
"Error groups"):

- each `node_failed` (every attempt, retries included) is a `node_attempt` occurrence, of the
  node's type;
- an `execution_failed` that names a node (`error.node_id`) is that node's last failure: it
  adds no occurrence, it marks the node's final `node_failed` (`will_retry` false) of the same
  batch as the one that ended the run (`ended_execution`), so one failure is counted once;
- an `execution_failed` without a node (the run's deadline, its step limit, an output
  expression, an engine crash, a run ended where it ran nowhere) is an `execution` occurrence
  that ended the run.

For that pairing the event log writer keeps a node's final failure back until the event that
ends the run is there too (`awaits_the_end`): they are stored, and their occurrences recorded,
in one transaction. `record_failures` records them in the caller's transaction under a
savepoint: an occurrence that cannot be stored is logged and dropped, and the events are
stored all the same (a lost connection still fails the whole append, which is retried).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from agentflow_grpc.model.error_groups import ErrorKind, NewOccurrence
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.spec import WorkflowSpec
from agentflow_grpc.storage import error_groups as store
from agentflow_grpc.storage.database import Connection

log = get_logger("agentflow.error_groups")

_FAILED = frozenset({EventType.NODE_FAILED, EventType.EXECUTION_FAILED})


@dataclass(frozen=True, slots=True)
class RunFailures:
    """What a run's failures are recorded with: the run, its workflow, its nodes' types."""

    execution_id: uuid.UUID
    workflow_id: uuid.UUID | None  # None for an inline spec
    node_types: Mapping[str, str]

    @classmethod
    def of(
        cls, execution_id: uuid.UUID, workflow_id: uuid.UUID | None, spec: WorkflowSpec | None
    ) -> RunFailures:
        types = {} if spec is None else {node.id: node.type for node in spec.nodes}
        return cls(execution_id, workflow_id, types)

    def occurrences(self, events: Sequence[ExecutionEvent]) -> list[NewOccurrence]:
        """The occurrences in `events` (the module doc); none for a batch without failures."""
        if _FAILED.isdisjoint({event.type for event in events}):  # the common batch: a glance
            return []
        found: list[NewOccurrence] = []
        final: dict[str, int] = {}  # node id → index in `found` of its final failure
        for event in events:
            if event.type is EventType.NODE_FAILED:
                node_id = event.node_id or ""
                if not event.data.get("will_retry", False):
                    final[node_id] = len(found)
                found.append(self._node_attempt(event, node_id))
            elif event.type is EventType.EXECUTION_FAILED:
                error: Mapping[str, Any] = event.data.get("error") or {}
                failed_at = str(error["node_id"]) if error.get("node_id") else None
                at = None if failed_at is None else final.get(failed_at)
                if at is not None:
                    found[at] = replace(found[at], ended_execution=True)
                else:
                    found.append(self._execution(event, error, failed_at))
        return found

    def _node_attempt(self, event: ExecutionEvent, node_id: str) -> NewOccurrence:
        return NewOccurrence(
            kind=ErrorKind.NODE_ATTEMPT,
            code=str(event.data.get("code", "node.failed")),
            message=str(event.data.get("message", "")),
            occurred_at=event.timestamp,
            node_type=self.node_types.get(node_id, ""),
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            node_id=node_id,
            attempt=event.attempt,
        )

    def _execution(
        self, event: ExecutionEvent, error: Mapping[str, Any], node_id: str | None
    ) -> NewOccurrence:
        # A node named without its final node_failed in the batch (not how the engine ends a
        # run): still one occurrence, of the node's type, so nothing is lost.
        return NewOccurrence(
            kind=ErrorKind.EXECUTION,
            code=str(error.get("code", "internal")),
            message=str(error.get("message", "")),
            occurred_at=event.timestamp,
            node_type=self.node_types.get(node_id, "") if node_id else "",
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            node_id=node_id,
            ended_execution=True,
        )


def awaits_the_end(events: Sequence[ExecutionEvent | None]) -> bool:
    """Whether `events` hold a node's final failure with nothing ending the run after it (an
    event that ends it, or None: the writer closing)."""
    if EventType.NODE_FAILED not in {event.type for event in events if event is not None}:
        return False
    for event in reversed(events):
        if event is None or event.is_terminal:
            return False
        if event.type is EventType.NODE_FAILED and not event.data.get("will_retry", False):
            return True
    return False


async def record_failures(
    connection: Connection, tenant_id: uuid.UUID, occurrences: Sequence[NewOccurrence]
) -> None:
    """Record `occurrences` in the caller's transaction, under a savepoint (the module doc)."""
    if not occurrences:
        return
    try:
        async with connection.transaction():  # a savepoint inside the caller's transaction
            await store.record(connection, tenant_id, occurrences)
    except asyncpg.PostgresConnectionError:
        raise
    except asyncpg.PostgresError:
        log.exception(
            "error_groups.not_recorded",
            occurrences=len(occurrences),
            codes=sorted({item.code for item in occurrences}),
        )
