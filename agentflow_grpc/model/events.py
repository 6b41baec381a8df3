"""Execution events: what a run reports, in order, as it happens.

Every event carries the execution id, a gap-free sequence number (1, 2, 3, … within one
execution) and a UTC timestamp. `data` holds the fields of its type, documented in
`docs/runtime.md`; the helpers below are the only places that build them, so each type always
has the same fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal


class EventType(StrEnum):
    EXECUTION_STARTED = "execution_started"
    # A background run taken over by another worker after its own stopped (its replica died):
    # it runs again from the start, its events continuing the log; stands in for the new
    # attempt's execution_started.
    EXECUTION_RESUMED = "execution_resumed"
    NODE_STARTED = "node_started"
    NODE_TOKEN = "node_token"
    NODE_COMPLETED = "node_completed"
    NODE_FAILED = "node_failed"
    EXECUTION_COMPLETED = "execution_completed"
    EXECUTION_FAILED = "execution_failed"
    EXECUTION_CANCELLED = "execution_cancelled"


TERMINAL_EVENT_TYPES = frozenset(
    {EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED, EventType.EXECUTION_CANCELLED}
)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens a provider reports for one call, or summed over a run.

    `prompt_tokens`, `completion_tokens` and `total_tokens` count what was spent; a reply answered
    from the response cache spends none, and its `total_tokens` when it was first made count as
    `cached_tokens` (tokens saved).

    The provider's own prompt cache is another matter: `prompt_tokens` counts every input token,
    and `cache_read_tokens` / `cache_write_tokens` say how many of them the provider read from
    its prompt cache or wrote to it (OpenTelemetry's `gen_ai.usage.cache_read.input_tokens` and
    `gen_ai.usage.cache_creation.input_tokens`; they are priced differently). `to_dict` leaves
    each of the three out while it is 0.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        data = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        for name in ("cached_tokens", "cache_read_tokens", "cache_write_tokens"):
            if count := getattr(self, name):
                data[name] = count
        return data

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> TokenUsage:
        return cls(
            data.get("prompt_tokens", 0),
            data.get("completion_tokens", 0),
            data.get("total_tokens", 0),
            data.get("cached_tokens", 0),
            data.get("cache_read_tokens", 0),
            data.get("cache_write_tokens", 0),
        )


NO_USAGE = TokenUsage()


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One call a node attempt made to a provider (a model, image, database or HTTP API), as
    the node timed it: from sending the request to the whole reply (or the error)."""

    duration_ms: float
    first_token_ms: float | None = None  # streamed model calls: until the first token
    provider: str | None = None  # model calls: the OpenTelemetry gen_ai.provider.name
    model: str | None = None  # model calls: the model that answered
    # A reply the response cache gave instead of a call: no provider time, only which model
    # made the reply it kept (so that the tokens it saved are the model's).
    cached: bool = False


def _call_fields(data: dict[str, Any], calls: Sequence[ProviderCall]) -> None:
    """An attempt's provider time (its calls summed), its first call's time to first token
    and, for a model call (or a reply from the response cache), which model answered
    (docs/runtime.md)."""
    made = [call for call in calls if not call.cached]
    if made:
        data["provider_ms"] = round(sum(call.duration_ms for call in made), 3)
        first_token = next((c.first_token_ms for c in made if c.first_token_ms is not None), None)
        if first_token is not None:
            data["provider_first_token_ms"] = round(first_token, 3)
    model = next((c for c in reversed(calls) if c.model is not None), None)
    if model is not None:
        data["model"] = {"provider": model.provider or "", "name": model.model}


CacheStatus = Literal["hit", "miss"]
"""How the response cache served a node: `hit` (no provider call) or `miss` (the provider was
called, with caching on)."""


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """An event as a node reports it, before the engine gives it its place in the run."""

    type: EventType
    node_id: str
    attempt: int
    data: dict[str, Any]
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    execution_id: str
    sequence: int
    timestamp: datetime
    type: EventType
    node_id: str | None = None
    attempt: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI's `--json` lines, and later the stored event log)."""
        document: dict[str, Any] = {
            "execution_id": self.execution_id,
            "sequence": self.sequence,
            "timestamp": self.timestamp.isoformat(),
            "type": self.type.value,
        }
        if self.node_id is not None:
            document["node_id"] = self.node_id
        if self.attempt is not None:
            document["attempt"] = self.attempt
        document["data"] = self.data
        return document


# --- the fields of each node event type ---


def node_started(node_id: str, attempt: int, node_type: str) -> NodeEvent:
    return NodeEvent(EventType.NODE_STARTED, node_id, attempt, {"node_type": node_type})


def node_token(node_id: str, attempt: int, text: str) -> NodeEvent:
    return NodeEvent(EventType.NODE_TOKEN, node_id, attempt, {"text": text})


def node_completed(
    node_id: str,
    attempt: int,
    output: Any,
    duration_ms: float,
    usage: TokenUsage | None,
    cache: CacheStatus | None = None,
    calls: Sequence[ProviderCall] = (),
) -> NodeEvent:
    data: dict[str, Any] = {"output": output, "duration_ms": round(duration_ms, 3)}
    if usage is not None:
        data["usage"] = usage.to_dict()
    if cache is not None:
        data["cache"] = cache
    _call_fields(data, calls)
    return NodeEvent(EventType.NODE_COMPLETED, node_id, attempt, data)


def node_failed(
    node_id: str,
    attempt: int,
    *,
    code: str,
    message: str,
    duration_ms: float,
    retry_in: float | None,
    calls: Sequence[ProviderCall] = (),
) -> NodeEvent:
    """`retry_in` is the delay (s) before the next attempt, or None when this was the last one."""
    data: dict[str, Any] = {
        "code": code,
        "message": message,
        "duration_ms": round(duration_ms, 3),
        "will_retry": retry_in is not None,
    }
    if retry_in is not None:
        data["retry_in"] = round(retry_in, 3)
    _call_fields(data, calls)
    return NodeEvent(EventType.NODE_FAILED, node_id, attempt, data)
