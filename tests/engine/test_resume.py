"""Durable runs and resuming them from their log (engine/resumption.py, compiler/replay.py).

A run is cut short by taking a prefix of a whole run's events — what a replica that died had
stored — and resumed from it with the real compiler and LangGraph: completed nodes are restored,
not run again; a node in flight runs again (its interrupted attempt closed first), or fails if
it is `at_most_once`; loops go on at the right iteration; sequences continue the log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from support.plugins import ControlledNodes, drafting_loop, plugin_node, plugin_spec, workflow
from support.retries import FAST_RETRY
from support.runs import collect, for_node, terminal

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.engine.resumption import Resumption
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import WorkflowSpec

RUN_ID = "7d3f0a7e-5f7e-4c39-9f57-2b1a3c4d5e6f"


async def whole_run(
    engine: ExecutionEngine, spec: WorkflowSpec, inputs: dict[str, Any] | None = None
) -> list[ExecutionEvent]:
    return await collect(
        engine.execute(spec, inputs or {}, sources=SourceSet([]), execution_id=RUN_ID)
    )


async def resumed_run(
    engine: ExecutionEngine,
    spec: WorkflowSpec,
    stored: list[ExecutionEvent],
    inputs: dict[str, Any] | None = None,
) -> list[ExecutionEvent]:
    resumption = Resumption(stored, reason="the replica running it stopped", delivery=2)
    execution = engine.start(
        spec, inputs or {}, sources=SourceSet([]), execution_id=RUN_ID, resume=resumption
    )
    return await collect(execution.events())


def through(events: list[ExecutionEvent], node_id: str, kind: EventType, nth: int = 1) -> int:
    """The length of the prefix that ends with the `nth` `kind` event of `node_id`."""
    seen = 0
    for index, event in enumerate(events):
        if event.node_id == node_id and event.type is kind:
            seen += 1
            if seen == nth:
                return index + 1
    raise AssertionError(f"no {kind} #{nth} of {node_id}")


def assert_continues(stored: list[ExecutionEvent], resumed: list[ExecutionEvent]) -> None:
    whole = [event.sequence for event in stored + resumed]
    assert whole == list(range(1, len(whole) + 1))
    assert resumed[0].type is EventType.EXECUTION_RESUMED
    assert resumed[0].data["resumed_after_sequence"] == stored[-1].sequence
    assert resumed[-1].is_terminal
    assert sum(event.is_terminal for event in resumed) == 1


def chain(nodes: ControlledNodes, **extra: Any) -> WorkflowSpec:
    """start → a → b → c, each echoing what it got."""
    return plugin_spec(
        workflow(
            [
                plugin_node("a", "test.echo", value="{{ inputs.topic }}"),
                {**plugin_node("b", "test.echo", value="{{ nodes.a.output.value }}!"), **extra},
                plugin_node("c", "test.echo", value="{{ nodes.b.output.value }}?"),
            ],
            [("start", "a"), ("a", "b"), ("b", "c")],
            {"result": "nodes.c.output.value"},
            inputs={"topic": {"type": "string"}},
        ),
        nodes,
    )


async def test_completed_nodes_are_restored_not_run_again_and_events_continue_the_log(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    spec = chain(nodes)
    whole = await whole_run(engine, spec, {"topic": "durable"})
    stored = whole[: through(whole, "b", EventType.NODE_COMPLETED)]
    nodes.calls.clear()

    resumed = await resumed_run(engine, spec, stored, {"topic": "durable"})

    assert nodes.calls == [("c", 1)]  # a and b are not called again
    assert_continues(stored, resumed)
    data = resumed[0].data
    assert data["restored_nodes"] == [
        {"node_id": "start", "completions": 1},
        {"node_id": "a", "completions": 1},
        {"node_id": "b", "completions": 1},
    ]
    assert data["interrupted_nodes"] == []
    assert data["delivery"] == 2
    assert data["workflow"] == "test-flow"
    assert data["inputs"] == {"topic": "durable"}
    assert terminal(resumed).type is EventType.EXECUTION_COMPLETED
    assert terminal(resumed).data["outputs"] == terminal(whole).data["outputs"]
    assert terminal(resumed).data["outputs"] == {"result": "durable!?"}
    # Only the nodes that ran report events; restored ones are in the stored log already.
    assert {e.node_id for e in resumed if e.node_id} == {"c"}


async def test_a_node_in_flight_runs_again_after_its_interrupted_attempt_is_closed(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    spec = chain(nodes)
    whole = await whole_run(engine, spec, {"topic": "x"})
    stored = whole[: through(whole, "b", EventType.NODE_STARTED)]  # b was running
    nodes.calls.clear()

    resumed = await resumed_run(engine, spec, stored, {"topic": "x"})

    assert nodes.calls == [("b", 2), ("c", 1)]
    assert_continues(stored, resumed)
    assert resumed[0].data["interrupted_nodes"] == ["b"]
    b_events = for_node(resumed, "b")
    assert [(e.type, e.attempt) for e in b_events] == [
        (EventType.NODE_FAILED, 1),
        (EventType.NODE_STARTED, 2),
        (EventType.NODE_COMPLETED, 2),
    ]
    assert b_events[0].data["code"] == "node.interrupted"
    assert b_events[0].data["will_retry"] is True
    assert terminal(resumed).data["outputs"] == {"result": "x!?"}
    assert terminal(resumed).data["retried_failures"] == 1


async def test_an_at_most_once_node_in_flight_fails_rather_than_repeat_its_call(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    spec = chain(nodes, at_most_once=True)
    whole = await whole_run(engine, spec, {"topic": "x"})
    stored = whole[: through(whole, "b", EventType.NODE_STARTED)]
    nodes.calls.clear()

    resumed = await resumed_run(engine, spec, stored, {"topic": "x"})

    assert nodes.calls == []
    assert_continues(stored, resumed)
    end = terminal(resumed)
    assert end.type is EventType.EXECUTION_FAILED
    assert end.data["error"]["code"] == "node.outcome_unknown"
    assert end.data["error"]["node_id"] == "b"
    failed = for_node(resumed, "b")
    assert [(e.type, e.attempt, e.data["will_retry"]) for e in failed] == [
        (EventType.NODE_FAILED, 1, False)
    ]


async def test_an_at_most_once_node_whose_attempt_timed_out_is_not_retried(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = workflow(
        [
            {
                **plugin_node("post", "test.sleep", seconds=5),
                "timeout": 0.05,
                "retry": FAST_RETRY,
                "at_most_once": True,
            }
        ],
        [("start", "post")],
        {"result": "nodes.post.output"},
    )
    events = await whole_run(engine, plugin_spec(document, nodes))
    assert nodes.calls == [("post", 1)]
    end = terminal(events)
    assert end.data["error"]["code"] == "node.outcome_unknown"
    assert "node.deadline_exceeded" in end.data["error"]["message"]


async def test_a_loop_resumes_at_the_iteration_it_had_reached(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = drafting_loop()
    spec = plugin_spec(document, nodes)
    whole = await whole_run(engine, spec, {"topic": "loops"})
    stored = whole[: through(whole, "draft", EventType.NODE_COMPLETED, nth=2)]
    nodes.calls.clear()

    resumed = await resumed_run(engine, spec, stored, {"topic": "loops"})

    assert nodes.calls == [("draft", 1), ("publish", 1)]  # the third draft, then publish
    assert_continues(stored, resumed)
    assert terminal(resumed).data["outputs"] == {"drafts": 3}
    iterations = [
        e.data["output"]["iteration"]
        for e in for_node(resumed, "review")
        if e.type is EventType.NODE_COMPLETED
    ]
    assert iterations == [2, 3]
    restored = {item["node_id"]: item["completions"] for item in resumed[0].data["restored_nodes"]}
    assert restored == {"start": 1, "draft": 2, "review": 1}


async def test_parallel_branches_restore_the_finished_one_and_rerun_the_one_in_flight(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = workflow(
        [
            plugin_node("left", "test.echo", value="L"),
            plugin_node("right", "test.echo", value="R"),
            {"id": "join", "type": "aggregator"},
        ],
        [("start", "left"), ("start", "right"), ("left", "join"), ("right", "join")],
        {"merged": "nodes.join.output"},
    )
    spec = plugin_spec(document, nodes)
    whole = await whole_run(engine, spec)
    # What was stored: everything up to the left branch's completion; of the right branch at
    # most its start (it was in flight), renumbered as the log would hold it.
    kept = [
        e
        for e in whole[: through(whole, "left", EventType.NODE_COMPLETED)]
        if not (e.node_id == "right" and e.type is not EventType.NODE_STARTED)
    ]
    stored = [
        ExecutionEvent(e.execution_id, n, e.timestamp, e.type, e.node_id, e.attempt, e.data)
        for n, e in enumerate(kept, start=1)
    ]
    nodes.calls.clear()

    resumed = await resumed_run(engine, spec, stored)

    assert [call[0] for call in nodes.calls] == ["right"]
    assert_continues(stored, resumed)
    merged = terminal(resumed).data["outputs"]["merged"]
    assert {key: value["value"] for key, value in merged.items()} == {"left": "L", "right": "R"}


async def test_a_durable_run_starts_no_node_before_the_outputs_it_follows_are_stored(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    execution = engine.start(
        chain(nodes), {"topic": "t"}, sources=SourceSet([]), execution_id=RUN_ID, durable=True
    )
    arrived: asyncio.Queue[ExecutionEvent] = asyncio.Queue()

    async def read() -> None:
        async for event in execution.events():
            await arrived.put(event)

    async def until(node_id: str, kind: EventType) -> ExecutionEvent:
        while True:
            event = await arrived.get()
            if event.node_id == node_id and event.type is kind:
                return event

    reader = asyncio.create_task(read())
    try:
        a_done = await asyncio.wait_for(until("a", EventType.NODE_COMPLETED), timeout=5)
        await asyncio.sleep(0.3)  # nothing is stored yet: b must not start
        assert arrived.empty()
        assert nodes.calls == [("a", 1)]
        execution.stored(a_done.sequence)  # a's output is durable now
        await asyncio.wait_for(until("b", EventType.NODE_COMPLETED), timeout=5)
        assert nodes.calls == [("a", 1), ("b", 1)]
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_an_engine_run_without_durability_never_waits(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    events = await asyncio.wait_for(whole_run(engine, chain(nodes), {"topic": "t"}), 5)
    assert terminal(events).data["outputs"] == {"result": "t!?"}
