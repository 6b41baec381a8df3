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


def deadline_exceeded(seconds: float) -> NodeFailure:
    return NodeFailure(
        "node.deadline_exceeded", f"the attempt took longer than {seconds:g} s", retryable=True
    )


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
