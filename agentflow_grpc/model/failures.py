"""Why a node attempt failed, and whether trying again could help.

Node handlers and source adapters raise `NodeFailure` with a stable code. Retries (see
`compiler.attempts`) happen only for `retryable` failures: timeouts, rate limits, unavailable
servers. Client errors (4xx, bad templates, bad output) fail at once.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime

from agentflow_grpc.model.errors import AgentFlowError


class NodeFailure(AgentFlowError):
    """`retry_after`: the seconds the other side asked us to wait before trying again (a
    provider's `Retry-After`); the next attempt waits at least that long, within the node's
    timeout."""

    code = "node.failed"

    def __init__(
        self, code: str, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def outcome_unknown(self) -> bool:
        """The call may have been applied before it failed (it timed out): an `at_most_once`
        node does not try it again."""
        return self.code == "node.deadline_exceeded" or self.code.endswith(".timeout")


def deadline_exceeded(seconds: float) -> NodeFailure:
    return NodeFailure(
        "node.deadline_exceeded", f"the attempt took longer than {seconds:g} s", retryable=True
    )


def outcome_unknown(failure: NodeFailure) -> NodeFailure:
    """An `at_most_once` node's attempt that failed without knowing whether its call was
    applied: it fails for good rather than repeat the call."""
    return NodeFailure(
        "node.outcome_unknown",
        f"{failure.message} ({failure.code}); the call may have been applied, and the node is "
        "at_most_once, so it is not repeated",
    )


def interrupted_attempt(attempt: int, *, at_most_once: bool) -> NodeFailure:
    """Attempt `attempt` of a node was running when its run's replica stopped (the run was
    resumed): retried, unless the node is `at_most_once` (its call's outcome is unknown)."""
    lost = f"attempt {attempt} was running when the replica running it stopped"
    if at_most_once:
        return NodeFailure(
            "node.outcome_unknown",
            f"{lost}; its call may have been applied, and the node is at_most_once, so it is "
            "not repeated",
        )
    return NodeFailure("node.interrupted", f"{lost}; it runs again", retryable=True)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header's wait in seconds (RFC 9110 §10.2.3): delay-seconds, or an
    HTTP-date from which `now` is subtracted. None when absent or unreadable; never negative."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP-date is always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def for_http_status(
    prefix: str, status: int, detail: str, *, retry_after: float | None = None
) -> NodeFailure:
    """A failure for an HTTP error status: 408, 429 and 5xx are retryable, others are not.
    `retry_after` (from the response's `Retry-After`) goes with a 429 or 503."""
    if status == 408:
        return NodeFailure(f"{prefix}.timeout", f"HTTP 408: {detail}", retryable=True)
    if status == 429:
        return NodeFailure(
            f"{prefix}.rate_limited",
            f"HTTP 429: {detail}",
            retryable=True,
            retry_after=retry_after,
        )
    if status >= 500:
        return NodeFailure(
            f"{prefix}.unavailable",
            f"HTTP {status}: {detail}",
            retryable=True,
            retry_after=retry_after if status == 503 else None,
        )
    if status in (401, 403):
        return NodeFailure(f"{prefix}.unauthenticated", f"HTTP {status}: {detail}")
    return NodeFailure(f"{prefix}.rejected", f"HTTP {status}: {detail}")


def context_too_long(detail: str) -> NodeFailure:
    """The prompt does not fit the model's context window: not retryable as it is."""
    return NodeFailure(
        "provider.context_too_long", f"the prompt is longer than the model's context: {detail}"
    )


def content_blocked(detail: str) -> NodeFailure:
    """The provider refused to answer (a safety or content filter) and gave no text."""
    return NodeFailure("provider.content_blocked", f"the provider blocked the reply: {detail}")
