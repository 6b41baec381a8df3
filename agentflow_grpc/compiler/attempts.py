"""Run one node: attempts with a timeout each, retries with backoff (tenacity), and the events.

Each attempt emits `node_started`; a failed attempt emits `node_failed` saying whether (and after
how long) it will be retried: after the policy's backoff, or after the wait the provider asked
for (`Retry-After`) when that is longer, up to the node's timeout. Success emits
`node_completed` with the output, the duration and the token usage. Only retryable failures
are retried (see `model.failures`).

Each attempt is a span, `node {id}` (INTERNAL), inside the execution's: its type and attempt
number, and its outcome (the failure's code as `error.type`, the cache status, the tokens).
Its duration is recorded in the run's `NodeMetrics`, by node type and how it ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.wait import wait_base

from agentflow_grpc.model.events import (
    NodeEvent,
    ProviderCall,
    node_completed,
    node_failed,
    node_started,
)
from agentflow_grpc.model.failures import (
    NodeFailure,
    deadline_exceeded,
    interrupted_attempt,
    outcome_unknown,
)
from agentflow_grpc.nodes.base import NodeResult
from agentflow_grpc.observability import error_reports, spans
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.spec.base import RetryPolicy

# One attempt of a node: called with its number (1, 2, …) and the list its provider calls go to.
Attempt = Callable[[int, list[ProviderCall]], Awaitable[NodeResult]]

log = get_logger("agentflow.runtime")

NO_RETRY = RetryPolicy(max_attempts=1)

# How an attempt ended, as NodeMetrics hears it.
COMPLETED, FAILED, TIMED_OUT, CANCELLED = "completed", "failed", "timed_out", "cancelled"
_DEADLINE = deadline_exceeded(0).code


class NodeMetrics(Protocol):
    """Where node attempts are recorded (the server's Prometheus metrics,
    `agentflow_grpc.observability.metrics`)."""

    def node_attempt(self, node_type: str, status: str, seconds: float) -> None:
        """One attempt of a `node_type` node ended (`completed`, `failed`, `timed_out`,
        `cancelled`) after `seconds`."""


class NodeExecutionError(Exception):
    """A node failed for good; the run fails with its failure."""

    def __init__(self, node_id: str, failure: NodeFailure) -> None:
        super().__init__(f"node {node_id!r}: {failure.message}")
        self.node_id = node_id
        self.failure = failure


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, NodeFailure) and exc.retryable


async def run_attempts(
    node_id: str,
    node_type: str,
    policy: RetryPolicy | None,
    timeout: float,
    attempt: Attempt,
    emit: Callable[[NodeEvent], None],
    metrics: NodeMetrics,
    *,
    interrupted: int = 0,
    at_most_once: bool = False,
) -> NodeResult:
    """Call `attempt(n, calls)` for n = 1, 2, … until it succeeds or may not be retried;
    the provider calls it notes in `calls` go into its node_completed / node_failed event.

    `interrupted`: the number of this node's attempt that was in flight when the run's replica
    stopped (a resumed run): it is closed as failed (`node.interrupted`, retried) and numbering
    goes on after it; an `at_most_once` node fails instead (`node.outcome_unknown`), as it does
    when an attempt times out (the call may have been applied)."""
    policy = policy or NO_RETRY
    backoff = policy.backoff
    durations: dict[int, float] = {}
    calls: dict[int, list[ProviderCall]] = {}
    if interrupted:
        lost = interrupted_attempt(interrupted, at_most_once=at_most_once)
        emit(
            node_failed(
                node_id,
                interrupted,
                code=lost.code,
                message=lost.message,
                duration_ms=0.0,
                retry_in=None if at_most_once else 0.0,
            )
        )
        if at_most_once:
            raise NodeExecutionError(node_id, lost)

    def report_retry(state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        assert isinstance(failure, NodeFailure)
        delay = state.next_action.sleep if state.next_action else 0.0
        number = interrupted + state.attempt_number
        emit(
            node_failed(
                node_id,
                number,
                code=failure.code,
                message=failure.message,
                duration_ms=durations[number],
                retry_in=delay,
                calls=calls.get(number, ()),
            )
        )

    async def one_attempt() -> NodeResult:
        number = interrupted + len(durations) + 1
        emit(node_started(node_id, number, node_type))
        started = time.perf_counter()
        made = calls[number] = []
        try:
            result = await _traced(node_id, node_type, number, timeout, attempt, made)
        except NodeFailure as failure:
            status = TIMED_OUT if failure.code == _DEADLINE else FAILED
            durations[number] = _ended(metrics, node_type, status, started)
            if at_most_once and failure.outcome_unknown:
                raise outcome_unknown(failure) from failure
            raise
        except Exception as exc:
            durations[number] = _ended(metrics, node_type, FAILED, started)
            log.exception("node.crashed", node_id=node_id, node_type=node_type)
            error_reports.report(exc, node_id=node_id, node_type=node_type)
            raise NodeFailure("node.internal", f"{type(exc).__name__}: {exc}") from exc
        except BaseException:  # the run was cancelled (or ran out of time) during the attempt
            _ended(metrics, node_type, CANCELLED, started)
            raise
        duration = _ended(metrics, node_type, COMPLETED, started)
        durations[number] = duration
        emit(
            node_completed(
                node_id, number, result.output, duration, result.usage, result.cache, made
            )
        )
        return result

    if policy.max_attempts == 1:
        # No retries: skip tenacity's per-call machinery (a third of the engine's per-node cost).
        try:
            return await one_attempt()
        except NodeFailure as failure:
            return _give_up(node_id, failure, durations, calls, emit)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=_AtLeastRetryAfter(
            wait_exponential_jitter(
                initial=backoff.initial,
                exp_base=backoff.multiplier,
                max=backoff.max,
                jitter=backoff.initial / 2 if backoff.jitter else 0,
            ),
            timeout,
        ),
        retry=retry_if_exception(_is_retryable),
        before_sleep=report_retry,
        reraise=True,
    )
    try:
        return await retrying(one_attempt)
    except NodeFailure as failure:
        return _give_up(node_id, failure, durations, calls, emit)


class _AtLeastRetryAfter(wait_base):
    """The node's backoff, or longer when the failure says how long to wait (a provider's
    `Retry-After`: `NodeFailure.retry_after`), that wait bounded by the node's timeout."""

    def __init__(self, backoff: wait_base, timeout: float) -> None:
        self._backoff = backoff
        self._timeout = timeout

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = self._backoff(retry_state)
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, NodeFailure) and failure.retry_after is not None:
            delay = max(delay, min(failure.retry_after, self._timeout))
        return delay


async def _traced(
    node_id: str,
    node_type: str,
    number: int,
    timeout: float,
    attempt: Attempt,
    calls: list[ProviderCall],
) -> NodeResult:
    """Attempt `number` in its span, within `timeout` (else `node.deadline_exceeded`)."""
    attributes: spans.Attributes = {
        "agentflow.node.id": node_id,
        "agentflow.node.type": node_type,
        "agentflow.node.attempt": number,
    }
    with spans.span(f"node {node_id}", attributes=attributes) as span:
        try:
            async with asyncio.timeout(timeout):
                result = await attempt(number, calls)
        except TimeoutError:
            raise deadline_exceeded(timeout) from None
        if span.is_recording():
            if result.cache is not None:
                span.set_attribute("agentflow.cache.status", result.cache)
            if result.route is not None:
                span.set_attribute("agentflow.node.route", result.route)
            if result.usage is not None:
                span.set_attribute("agentflow.usage.input_tokens", result.usage.prompt_tokens)
                span.set_attribute("agentflow.usage.output_tokens", result.usage.completion_tokens)
        return result


def _ended(metrics: NodeMetrics, node_type: str, status: str, started: float) -> float:
    """Record an attempt that ended; its duration in milliseconds (as the events give it)."""
    seconds = time.perf_counter() - started
    metrics.node_attempt(node_type, status, seconds)
    return seconds * 1000


def _give_up(
    node_id: str,
    failure: NodeFailure,
    durations: dict[int, float],
    calls: dict[int, list[ProviderCall]],
    emit: Callable[[NodeEvent], None],
) -> NoReturn:
    number = max(durations)
    emit(
        node_failed(
            node_id,
            number,
            code=failure.code,
            message=failure.message,
            duration_ms=durations.get(number, 0.0),
            retry_in=None,
            calls=calls.get(number, ()),
        )
    )
    raise NodeExecutionError(node_id, failure) from failure
