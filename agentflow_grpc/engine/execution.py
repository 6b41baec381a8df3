"""The execution engine: run a compiled workflow on LangGraph and stream its events.

`ExecutionEngine.start()` checks the inputs at once (bad inputs raise `InvalidInputsError`
before any node runs) and returns an `Execution`. Iterating it starts the run in its own task and
yields `ExecutionEvent`s with gap-free sequence numbers, ending with exactly one terminal event:
`execution_completed`, `execution_failed` or `execution_cancelled`.

Events come from LangGraph's own streaming: nodes report through the run's stream writer
(`custom` mode), and the merged GraphState arrives after each superstep (`values` mode).
Closing the iterator (or cancelling the task reading it) cancels the run; no task outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from langgraph.errors import GraphRecursionError

from agentflow_grpc.compiler import CompiledWorkflow, CompiledWorkflowCache
from agentflow_grpc.compiler.attempts import NodeExecutionError, NodeMetrics
from agentflow_grpc.compiler.state import RunContext
from agentflow_grpc.engine.model_usage import ModelUsage
from agentflow_grpc.engine.resumption import Resumption
from agentflow_grpc.model.events import (
    NO_USAGE,
    EventType,
    ExecutionEvent,
    NodeEvent,
    TokenUsage,
)
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.base import SourceProvider
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.nodes.response_cache import ResponseCache, ScopedResponseCache
from agentflow_grpc.nodes.templating import variables
from agentflow_grpc.observability import error_reports
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.spec import WorkflowSpec

log = get_logger("agentflow.runtime")

_QUEUE_SIZE = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class _StoredMark:
    """Written to the run's stream by a node waiting for its events to be stored."""

    done: asyncio.Future[None]


class ExecutionEngine:
    """Runs workflows. One engine per process: it owns the compiled-graph cache."""

    def __init__(
        self,
        *,
        metrics: NodeMetrics,
        registry: NodeRegistry | None = None,
        cache_size: int = 256,
        node_timeout: float = 300.0,
        execution_timeout: float = 3600.0,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.metrics = metrics  # every node attempt of every run is recorded here
        self.registry = registry or NodeRegistry.from_entry_points()
        self.cache = CompiledWorkflowCache(cache_size)
        self.node_timeout = node_timeout
        self.execution_timeout = execution_timeout
        # LLM replies of nodes with `cache: {ttl}`, for runs started with a `cache_namespace`.
        self.response_cache = response_cache

    def start(
        self,
        spec: WorkflowSpec,
        inputs: Mapping[str, Any],
        *,
        sources: SourceProvider,
        execution_id: str | None = None,
        timeout: float | None = None,
        cache_namespace: str | None = None,
        durable: bool = False,
        resume: Resumption | None = None,
    ) -> Execution:
        """Check inputs and prepare a run; iterate the result to run it.

        `cache_namespace` (the tenant) scopes the LLM response cache: nodes with `cache: {ttl}`
        share replies with runs of the same namespace only. Without one, nothing is cached.

        `durable`: the events are stored by whoever reads them, who says how far with
        `Execution.stored(sequence)`; a node does not start before the outputs it follows are
        stored. `resume`: the run's stored log — completed nodes are restored from it, not run
        again, and the events continue it (`execution_resumed` first)."""
        if cache_namespace is not None and not cache_namespace:
            raise ValueError("cache_namespace must not be empty; give None to cache nothing")
        workflow = self.cache.get(spec)
        checked = workflow.input_checker.check(inputs)
        response_cache = None
        if self.response_cache is not None and cache_namespace is not None:
            response_cache = ScopedResponseCache(self.response_cache, cache_namespace)
        return Execution(
            workflow,
            checked,
            RunContext(
                execution_id=execution_id or str(uuid.uuid4()),
                sources=sources,
                registry=self.registry,
                default_node_timeout=self.node_timeout,
                metrics=self.metrics,
                response_cache=response_cache,
            ),
            timeout if timeout is not None else self.execution_timeout,
            durable=durable,
            resume=resume,
        )

    def execute(
        self,
        spec: WorkflowSpec,
        inputs: Mapping[str, Any],
        *,
        sources: SourceProvider,
        execution_id: str | None = None,
        timeout: float | None = None,
        cache_namespace: str | None = None,
    ) -> AsyncIterator[ExecutionEvent]:
        """`start(...)` and iterate: the run's events, as they happen."""
        execution = self.start(
            spec,
            inputs,
            sources=sources,
            execution_id=execution_id,
            timeout=timeout,
            cache_namespace=cache_namespace,
        )
        return execution.events()


class Execution:
    """One run. `events()` may be iterated once; `cancel()` stops the run from anywhere."""

    def __init__(
        self,
        workflow: CompiledWorkflow,
        inputs: dict[str, Any],
        run: RunContext,
        timeout: float,
        *,
        durable: bool = False,
        resume: Resumption | None = None,
    ) -> None:
        self.workflow = workflow
        self.inputs = inputs
        self.id = run.execution_id
        self._run = dataclasses.replace(
            run,
            replay=None if resume is None else resume.replay(),
            checkpoint=self._checkpoint if durable else None,
        )
        self._timeout = timeout
        self._resume = resume
        self._sequence = 0 if resume is None else resume.after_sequence
        self._stored_through = self._sequence  # the events stored so far (a durable run)
        self._checkpoints: list[tuple[int, asyncio.Future[None]]] = []  # waiting for storage
        self._task: asyncio.Task[None] | None = None
        self._producing = False  # the task has started: cancelling it will be seen
        self._cancel_reason: str | None = None
        self._running: dict[str, int] = {}  # node id → attempt, for nodes started and not ended
        # Tallied from the events, so that failed and cancelled runs report them too.
        self._usage = NO_USAGE
        self._models = ModelUsage()  # tokens by model, for the terminal event's `models`
        self._retried = 0  # failed attempts that were retried
        if resume is not None:  # the whole run's, the restored completions' included
            for completed in resume.completions():
                self._tally(completed.data)
            self._retried = resume.retried_failures()

    def cancel(self, reason: str = "cancelled by request") -> None:
        """Stop the run; its stream ends with `execution_cancelled`."""
        if self._cancel_reason is None:
            self._cancel_reason = reason
        # A task cancelled before its first step never runs its body, and could not report the
        # cancellation; one not yet producing sees the reason when it starts instead.
        if self._task is not None and self._producing:
            self._task.cancel()

    def stored(self, sequence: int) -> None:
        """The run's events up to `sequence` are stored (a durable run's reader says so):
        nodes waiting for them go on."""
        self._stored_through = max(self._stored_through, sequence)
        self._settle()

    async def _checkpoint(self, write: Callable[[Any], None]) -> None:
        """Until what the caller wrote to the run's stream before this is stored. The mark
        follows its events through the stream, so it is numbered after them."""
        mark = asyncio.get_running_loop().create_future()
        write(_StoredMark(mark))
        await mark

    def _settle(self) -> None:
        while self._checkpoints and self._checkpoints[0][0] <= self._stored_through:
            _, mark = self._checkpoints.pop(0)
            if not mark.done():
                mark.set_result(None)

    async def events(self) -> AsyncGenerator[ExecutionEvent, None]:
        if self._task is not None:
            raise RuntimeError("an execution's events can be iterated only once")
        queue: asyncio.Queue[ExecutionEvent] = asyncio.Queue(_QUEUE_SIZE)
        self._task = asyncio.create_task(self._produce(queue), name=f"execution-{self.id}")
        try:
            while True:
                event = await queue.get()
                yield event
                if event.is_terminal:
                    break
        finally:
            if not self._task.done():
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _event(
        self, event_type: EventType, data: dict[str, Any], *, node: NodeEvent | None = None
    ) -> ExecutionEvent:
        self._sequence += 1
        if node is None:
            return ExecutionEvent(self.id, self._sequence, datetime.now(UTC), event_type, data=data)
        return ExecutionEvent(
            self.id,
            self._sequence,
            node.timestamp,
            node.type,
            node.node_id,
            node.attempt,
            node.data,
        )

    async def _produce(self, queue: asyncio.Queue[ExecutionEvent]) -> None:
        self._producing = True
        started = time.perf_counter()
        if self._resume is not None and self._resume.first_timestamp is not None:
            # The whole run's duration, from its first start.
            since = datetime.now(UTC) - self._resume.first_timestamp
            started -= max(0.0, since.total_seconds())
        end: EventType
        data: dict[str, Any]
        try:
            outputs = await self._run_graph(queue)
            end, data = EventType.EXECUTION_COMPLETED, {"outputs": outputs}
        except asyncio.CancelledError:
            if self._cancel_reason is None:
                raise  # the reader went away: nobody to tell
            end, data = EventType.EXECUTION_CANCELLED, {"reason": self._cancel_reason}
        except Exception as exc:
            end, data = EventType.EXECUTION_FAILED, {"error": self._error(exc)}
        data["usage"] = self._usage.to_dict()
        models = self._models.to_list()
        if models:
            data["models"] = models
        data["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        if self._running:
            data["interrupted_nodes"] = sorted(self._running)
        if self._retried:
            data["retried_failures"] = self._retried
        await queue.put(self._event(end, data))

    async def _run_graph(self, queue: asyncio.Queue[ExecutionEvent]) -> dict[str, Any]:
        """Stream the graph's events onto the queue; the run's outputs when it completes."""
        spec = self.workflow.spec
        begins = {
            "workflow": spec.name,
            "spec_hash": self.workflow.spec_hash,
            "inputs": self.inputs,
            "node_count": len(spec.nodes),
        }
        if self._resume is None:
            await queue.put(self._event(EventType.EXECUTION_STARTED, begins))
        else:
            resumed = {**begins, **self._resume.described()}
            await queue.put(self._event(EventType.EXECUTION_RESUMED, resumed))
        if self._cancel_reason is not None:
            raise asyncio.CancelledError  # cancelled before it started
        state: dict[str, Any] = {}
        async with asyncio.timeout(self._timeout):
            stream: Any = self.workflow.graph.astream(
                {"inputs": self.inputs},
                {"recursion_limit": self.workflow.recursion_limit},
                context=self._run,
                stream_mode=["custom", "values"],
            )
            async with contextlib.aclosing(stream):
                async for mode, chunk in stream:
                    if isinstance(chunk, _StoredMark):
                        self._checkpoints.append((self._sequence, chunk.done))
                        self._settle()
                    elif mode == "custom":
                        await queue.put(self._node_event(chunk))
                    else:
                        state = chunk
        return self._outputs(state)

    def _error(self, exc: Exception) -> dict[str, Any]:
        """What `execution_failed` says about the exception that ended the run."""
        if isinstance(exc, NodeExecutionError):
            failure = exc.failure
            return {"code": failure.code, "message": failure.message, "node_id": exc.node_id}
        if isinstance(exc, NodeFailure):  # an output expression
            return {"code": exc.code, "message": exc.message}
        if isinstance(exc, TimeoutError):
            return {
                "code": "execution.deadline_exceeded",
                "message": f"the execution took longer than {self._timeout:g} s",
            }
        if isinstance(exc, GraphRecursionError):
            return {
                "code": "execution.step_limit",
                "message": f"the run exceeded {self.workflow.recursion_limit} steps",
            }
        log.exception("execution.crashed", execution_id=self.id)
        error_reports.report(exc, execution_id=self.id)
        return {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}

    def _node_event(self, event: NodeEvent) -> ExecutionEvent:
        if event.type is EventType.NODE_STARTED:
            self._running[event.node_id] = event.attempt
        elif event.type is EventType.NODE_COMPLETED:
            self._running.pop(event.node_id, None)
            self._tally(event.data)
        elif event.type is EventType.NODE_FAILED:
            self._running.pop(event.node_id, None)
            self._retried += event.data["will_retry"]
        return self._event(event.type, event.data, node=event)

    def _tally(self, completed: Mapping[str, Any]) -> None:
        """Count a node_completed event's tokens in the run's."""
        if "usage" in completed:
            self._usage = self._usage + TokenUsage.from_dict(completed["usage"])
        self._models.add(completed)

    def _outputs(self, state: Mapping[str, Any]) -> dict[str, Any]:
        scope = variables(self.inputs, state.get("outputs", {}))
        renderer = self.workflow.renderer
        return {
            name: renderer.evaluate(output.from_, scope, f"output {name!r}")
            for name, output in self.workflow.spec.outputs.items()
        }
