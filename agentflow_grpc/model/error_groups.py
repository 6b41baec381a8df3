"""Error groups and their occurrences, as the services record them and the storage returns them.

An occurrence is one failure: a failed node attempt (`node_attempt`), a run that failed other
than at a node (`execution`), or an unexpected exception of an API call (`internal`). Every
occurrence belongs to the group of its fingerprint (model/error_fingerprints.py): one cause,
one group, per tenant. docs/observability.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from agentflow_grpc.model.error_fingerprints import fingerprint, message_pattern

MESSAGE_LIMIT = 4000  # characters of an occurrence's message kept
STACK_LIMIT = 32000  # characters of an internal error's stack kept (its end, where it failed)


class ErrorKind(StrEnum):
    NODE_ATTEMPT = "node_attempt"
    EXECUTION = "execution"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class NewOccurrence:
    """A failure to record; its pattern and fingerprint follow from code, node type, message."""

    kind: ErrorKind
    code: str
    message: str
    occurred_at: datetime
    node_type: str = ""
    execution_id: uuid.UUID | None = None
    workflow_id: uuid.UUID | None = None
    node_id: str | None = None
    attempt: int | None = None
    method: str | None = None  # the RPC method of an internal error
    stack: str = ""  # an internal error's formatted traceback
    ended_execution: bool = False  # this failure ended its run
    message_pattern: str = field(init=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        # PostgreSQL text cannot hold U+0000: a provider's odd message must not lose the record.
        message = _storable(self.message)[:MESSAGE_LIMIT]
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "stack", _storable(self.stack)[-STACK_LIMIT:])
        pattern = message_pattern(message)
        object.__setattr__(self, "message_pattern", pattern)
        object.__setattr__(self, "fingerprint", fingerprint(self.code, self.node_type, pattern))


@dataclass(frozen=True, slots=True)
class ErrorOccurrence:
    """A stored occurrence."""

    kind: ErrorKind
    message: str
    occurred_at: datetime
    execution_id: uuid.UUID | None
    workflow_id: uuid.UUID | None
    node_id: str | None
    attempt: int | None
    method: str | None
    ended_execution: bool


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """A stored group. From `top_groups`, `count`, `failed_execution_count` and the workflows
    are those of the window asked for; otherwise of all time."""

    fingerprint: str
    code: str
    node_type: str
    kind: ErrorKind  # of its first occurrence
    message_pattern: str
    sample_message: str  # the latest occurrence's message
    stack: str  # the latest internal error's stack; empty for other kinds
    count: int
    failed_execution_count: int  # runs it ended
    first_seen_at: datetime
    last_seen_at: datetime
    workflow_ids: tuple[uuid.UUID, ...] = ()  # the most recently affected first, up to 100
    workflow_count: int = 0  # all of them
    occurrences: tuple[ErrorOccurrence, ...] = ()  # newest first (a group read on its own)


def _storable(text: str) -> str:
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
