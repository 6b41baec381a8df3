"""Helpers to run workflows in tests and look at their events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from agentflow_grpc.runtime.events import EventType, ExecutionEvent


async def collect(events: AsyncIterator[ExecutionEvent]) -> list[ExecutionEvent]:
    return [event async for event in events]


def of_type(events: Iterable[ExecutionEvent], event_type: EventType) -> list[ExecutionEvent]:
    return [event for event in events if event.type is event_type]


def for_node(events: Iterable[ExecutionEvent], node_id: str) -> list[ExecutionEvent]:
    return [event for event in events if event.node_id == node_id]


def terminal(events: list[ExecutionEvent]) -> ExecutionEvent:
    assert events, "no events"
    assert events[-1].is_terminal, f"the last event is {events[-1].type}, not terminal"
    return events[-1]


def assert_well_formed(events: list[ExecutionEvent]) -> None:
    """One execution id, sequence 1..n without gaps, started first, exactly one terminal last."""
    assert events[0].type is EventType.EXECUTION_STARTED
    assert {event.execution_id for event in events} == {events[0].execution_id}
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    assert [event.is_terminal for event in events].count(True) == 1
    assert events[-1].is_terminal
    timestamps = [event.timestamp for event in events]
    assert timestamps == sorted(timestamps)
