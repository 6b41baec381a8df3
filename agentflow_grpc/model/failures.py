"""Why a node attempt failed, and whether trying again could help.

Node handlers and source adapters raise `NodeFailure` with a stable code. Retries (see
`compiler.attempts`) happen only for `retryable` failures: timeouts, rate limits, unavailable
servers. Client errors (4xx, bad templates, bad output) fail at once.
"""

from __future__ import annotations

from agentflow_grpc.model.errors import AgentFlowError


class NodeFailure(AgentFlowError):
    code = "node.failed"

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable

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


def for_http_status(prefix: str, status: int, detail: str) -> NodeFailure:
    """A failure for an HTTP error status: 408, 429 and 5xx are retryable, others are not."""
    if status == 408:
        return NodeFailure(f"{prefix}.timeout", f"HTTP 408: {detail}", retryable=True)
    if status == 429:
        return NodeFailure(f"{prefix}.rate_limited", f"HTTP 429: {detail}", retryable=True)
    if status >= 500:
        return NodeFailure(f"{prefix}.unavailable", f"HTTP {status}: {detail}", retryable=True)
    if status in (401, 403):
        return NodeFailure(f"{prefix}.unauthenticated", f"HTTP {status}: {detail}")
    return NodeFailure(f"{prefix}.rejected", f"HTTP {status}: {detail}")
