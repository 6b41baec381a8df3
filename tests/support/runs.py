"""Helpers to run workflows in tests and look at their events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import WorkflowSpec, validate_spec
from support.provider import SLOW

# --- building and running workflows ---


def single_node_workflow(
    node: dict[str, Any], *, name: str, inputs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """input `start` → `node` (a whole node dict, id and type included) → output `result`.

    The output `result` is the node's whole output."""
    return {
        "api_version": "agentflow/v1",
        "name": name,
        "inputs": inputs or {},
        "outputs": {"result": {"from": f"nodes.{node['id']}.output"}},
        "nodes": [{"id": "start", "type": "input"}, node],
        "edges": [{"from": "start", "to": node["id"]}],
    }


def answer_spec(
    name: str = "answer", prompt: str = "Answer: {{ inputs.question }}"
) -> dict[str, Any]:
    """input `start` → llm `reply` on source `openai-main` (`prompt`) → output `answer`."""
    return {
        "api_version": "agentflow/v1",
        "name": name,
        "inputs": {"question": {"type": "string"}},
        "outputs": {"answer": {"from": "nodes.reply.output.text"}},
        "nodes": [
            {"id": "start", "type": "input"},
            {"id": "reply", "type": "llm", "source": "openai-main", "config": {"prompt": prompt}},
        ],
        "edges": [{"from": "start", "to": "reply"}],
    }


def slow_spec(name: str = "slow") -> dict[str, Any]:
    """`answer_spec` whose prompt holds SLOW, the marker a test's provider rule delays."""
    return answer_spec(name, prompt=SLOW + " {{ inputs.question }}")


def validated(document: dict[str, Any], sources: SourceSet | None) -> WorkflowSpec:
    """The spec of a document that must pass the validator (checked against `sources`' types)."""
    result = validate_spec(document, sources=None if sources is None else sources.types_by_name())
    assert result.ok, result.violations
    assert result.spec is not None
    return result.spec


async def run_spec(
    engine: ExecutionEngine,
    spec: WorkflowSpec,
    sources: SourceSet,
    inputs: dict[str, Any] | None = None,
) -> list[ExecutionEvent]:
    """Run `spec` to its end with `sources` (left open); its events, checked well formed."""
    events = await collect(engine.execute(spec, inputs or {}, sources=sources))
    assert_well_formed(events)
    return events


async def run_document(
    engine: ExecutionEngine,
    document: dict[str, Any],
    definitions: list[SourceDefinition],
    inputs: dict[str, Any] | None = None,
    *,
    check_sources: bool = True,
) -> list[ExecutionEvent]:
    """Validate `document` and run it with a source set of `definitions`, closed afterwards.

    `check_sources=False` leaves the sources out of validation, to see what the run does."""
    sources = SourceSet(definitions)
    try:
        spec = validated(document, sources if check_sources else None)
        return await run_spec(engine, spec, sources, inputs)
    finally:
        await sources.aclose()


async def collect(events: AsyncIterator[ExecutionEvent]) -> list[ExecutionEvent]:
    return [event async for event in events]


# --- looking at events ---


def of_type(events: Iterable[ExecutionEvent], event_type: EventType) -> list[ExecutionEvent]:
    return [event for event in events if event.type is event_type]


def for_node(events: Iterable[ExecutionEvent], node_id: str) -> list[ExecutionEvent]:
    return [event for event in events if event.node_id == node_id]


def terminal(events: list[ExecutionEvent]) -> ExecutionEvent:
    assert events, "no events"
    assert events[-1].is_terminal, f"the last event is {events[-1].type}, not terminal"
    return events[-1]


def output_of(events: list[ExecutionEvent], name: str = "result") -> Any:
    """The output `name` of a run that must have completed."""
    end = terminal(events)
    assert end.type is EventType.EXECUTION_COMPLETED, end.data
    return end.data["outputs"][name]


def error_of(events: list[ExecutionEvent]) -> dict[str, Any]:
    """The error of a run that must have failed."""
    end = terminal(events)
    assert end.type is EventType.EXECUTION_FAILED, end.data
    error: dict[str, Any] = end.data["error"]
    return error


def started_attempts(events: list[ExecutionEvent], node_id: str) -> list[int | None]:
    """The attempt number of every node_started event of `node_id`, in order."""
    return [event.attempt for event in of_type(for_node(events, node_id), EventType.NODE_STARTED)]


def failed_events(events: list[ExecutionEvent], node_id: str) -> list[ExecutionEvent]:
    """The node_failed events of `node_id`, in order."""
    return of_type(for_node(events, node_id), EventType.NODE_FAILED)


def failures(events: list[ExecutionEvent], node_id: str) -> list[tuple[str, bool]]:
    """(code, will_retry) of every node_failed event of `node_id`, in order."""
    return [
        (event.data["code"], event.data["will_retry"]) for event in failed_events(events, node_id)
    ]


def will_retry(events: list[ExecutionEvent], node_id: str) -> list[bool]:
    """will_retry of every node_failed event of `node_id`, in order."""
    return [retry for _, retry in failures(events, node_id)]


def assert_well_formed(events: list[ExecutionEvent]) -> None:
    """One execution id, sequence 1..n without gaps, started first, exactly one terminal last."""
    assert events[0].type is EventType.EXECUTION_STARTED
    assert {event.execution_id for event in events} == {events[0].execution_id}
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    assert [event.is_terminal for event in events].count(True) == 1
    assert events[-1].is_terminal
    timestamps = [event.timestamp for event in events]
    assert timestamps == sorted(timestamps)
