"""The execution engine: events, scheduling, joins, routes, loops, retries, timeouts, cancellation.

The nodes are test plugins (tests/support/plugins.py) whose behaviour each test controls, run by
the real compiler and LangGraph; no part of the engine is replaced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.plugins import ControlledNodes, drafting_loop, plugin_node, plugin_spec, workflow
from support.retries import FAST_RETRY
from support.runs import assert_well_formed, collect, for_node, of_type, terminal
from support.sources import llm_source

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.errors import InvalidInputsError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import WorkflowSpec
from agentflow_grpc.testing import FakeProviderServer


def spec_of(document: dict[str, Any], nodes: ControlledNodes) -> WorkflowSpec:
    return plugin_spec(document, nodes)


async def run(
    engine: ExecutionEngine, spec: WorkflowSpec, inputs: dict[str, Any] | None = None, **kw: Any
) -> list[ExecutionEvent]:
    events = await collect(engine.execute(spec, inputs or {}, sources=SourceSet([]), **kw))
    assert_well_formed(events)
    return events


def types_for(events: list[ExecutionEvent], node_id: str) -> list[str]:
    return [event.type.value for event in for_node(events, node_id)]


# --- events ---


async def test_a_run_reports_every_node_in_order_and_ends_with_the_outputs(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    spec = spec_of(
        workflow(
            [plugin_node("greet", "test.echo", value="Hello {{ inputs.name }}")],
            [("start", "greet")],
            {"greeting": "nodes.greet.output.value"},
            inputs={"name": {"type": "string"}, "lang": {"type": "string", "default": "en"}},
        ),
        nodes,
    )
    events = await run(engine, spec, {"name": "Ada"})
    started = events[0]
    assert started.data["workflow"] == "test-flow"
    assert started.data["inputs"] == {"name": "Ada", "lang": "en"}
    assert len(started.data["spec_hash"]) == 64
    assert types_for(events, "start") == ["node_started", "node_completed"]
    assert types_for(events, "greet") == ["node_started", "node_completed"]
    completed = for_node(events, "greet")[1]
    assert completed.attempt == 1
    assert completed.data["output"] == {"value": "Hello Ada", "attempt": 1, "visit": 1}
    assert completed.data["duration_ms"] >= 0
    end = terminal(events)
    assert end.type is EventType.EXECUTION_COMPLETED
    assert end.data["outputs"] == {"greeting": "Hello Ada"}
    assert end.data["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert end.to_dict()["type"] == "execution_completed"


async def test_invalid_inputs_are_rejected_before_any_node_runs(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    spec = spec_of(
        workflow(
            [plugin_node("work", "test.echo")],
            [("start", "work")],
            {"out": "nodes.work.output"},
            inputs={
                "name": {"type": "string", "min_length": 2},
                "count": {"type": "integer", "minimum": 1},
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            },
        ),
        nodes,
    )
    with pytest.raises(InvalidInputsError) as caught:
        engine.start(spec, {"name": "A", "mode": "c", "extra": 1}, sources=SourceSet([]))
    problems = {(v.path, v.code) for v in caught.value.violations}
    assert problems == {
        ("/inputs/count", "input.missing"),
        ("/inputs/extra", "input.unknown"),
        ("/inputs/mode", "input.invalid"),
        ("/inputs/name", "input.invalid"),
    }
    assert nodes.calls == []


# --- scheduling ---


async def test_a_slow_branch_does_not_hold_back_a_linear_run_in_a_fast_one(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    # `slow` finishes only once `a2` has started. If a2 waited for the superstep in which `slow`
    # runs (plain LangGraph scheduling), this run would never end.
    spec = spec_of(
        workflow(
            [
                plugin_node("a1", "test.echo"),
                plugin_node("a2", "test.echo", signal="a2_started"),
                plugin_node("slow", "test.echo", wait_for="a2_started"),
                {"id": "join", "type": "aggregator", "config": {"strategy": "list"}},
            ],
            [("start", "a1"), ("a1", "a2"), ("start", "slow"), ("a2", "join"), ("slow", "join")],
            {"items": "nodes.join.output['items'] | length"},
        ),
        nodes,
    )
    events = await asyncio.wait_for(run(engine, spec), timeout=10)
    assert terminal(events).data["outputs"] == {"items": 2}


async def test_fan_out_runs_branches_concurrently_and_the_aggregator_joins_them_once(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    # Each branch waits for the next one's signal, in a ring broken by the last: they can only
    # all finish if they all run at the same time.
    branches = [
        plugin_node("b0", "test.echo", value="zero", wait_for="b1", signal="b0"),
        plugin_node("b1", "test.echo", value="one", wait_for="b2", signal="b1"),
        plugin_node("b2", "test.echo", value="two", signal="b2"),
    ]
    spec = spec_of(
        workflow(
            [*branches, {"id": "join", "type": "aggregator"}],
            [("start", "b0"), ("start", "b1"), ("start", "b2")]
            + [(f"b{i}", "join") for i in range(3)],
            {"merged": "nodes.join.output"},
        ),
        nodes,
    )
    events = await asyncio.wait_for(run(engine, spec), timeout=10)
    merged = terminal(events).data["outputs"]["merged"]
    assert {key: value["value"] for key, value in merged.items()} == {
        "b0": "zero",
        "b1": "one",
        "b2": "two",
    }
    join_events = for_node(events, "join")
    assert [e.type for e in join_events] == [EventType.NODE_STARTED, EventType.NODE_COMPLETED]
    join_start = events.index(join_events[0])
    branch_ends = [events.index(for_node(events, f"b{i}")[-1]) for i in range(3)]
    assert max(branch_ends) < join_start


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("object", {"left": {"text": "L"}, "right": {"text": "R"}}),
        ("list", {"items": [{"text": "L"}, {"text": "R"}]}),
        ("text", {"text": "L | R"}),
    ],
)
async def test_aggregator_strategies_merge_branches_in_edge_order(
    engine: ExecutionEngine, nodes: ControlledNodes, strategy: str, expected: dict[str, Any]
) -> None:
    spec = spec_of(
        workflow(
            [
                plugin_node("right", "test.text", value="R"),
                plugin_node("left", "test.text", value="L"),
                {
                    "id": "join",
                    "type": "aggregator",
                    "config": {"strategy": strategy, "separator": " | "},
                },
            ],
            [("start", "right"), ("start", "left"), ("left", "join"), ("right", "join")],
            {"merged": "nodes.join.output"},
        ),
        nodes,
    )
    events = await run(engine, spec)
    assert terminal(events).data["outputs"]["merged"] == expected


# --- routes and loops ---


def triage(default_route: str = "other") -> dict[str, Any]:
    return workflow(
        [
            {
                "id": "route",
                "type": "router",
                "config": {
                    "routes": [
                        {"name": "big", "when": "inputs.amount > 100"},
                        {"name": "small", "when": "inputs.amount > 0"},
                    ],
                    "default": default_route,
                },
            },
            plugin_node("big_path", "test.echo", value="big"),
            plugin_node("small_path", "test.echo", value="small"),
            plugin_node("other_path", "test.echo", value="other"),
        ],
        [
            ("start", "route"),
            ("route", "big_path", "big"),
            ("route", "small_path", "small"),
            ("route", "other_path", default_route),
        ],
        {
            "path": "nodes.big_path.output.value if nodes.big_path is defined else "
            "(nodes.small_path.output.value if nodes.small_path is defined "
            "else nodes.other_path.output.value)",
            "route": "nodes.route.output.route",
        },
        inputs={"amount": {"type": "number"}},
    )


@pytest.mark.parametrize(
    ("amount", "route"), [(500, "big"), (5, "small"), (0, "other"), (-3, "other")]
)
async def test_a_router_takes_the_first_true_route_or_the_default(
    engine: ExecutionEngine, nodes: ControlledNodes, amount: int, route: str
) -> None:
    events = await run(engine, spec_of(triage(), nodes), {"amount": amount})
    assert terminal(events).data["outputs"] == {"path": route, "route": route}
    ran = {event.node_id for event in of_type(events, EventType.NODE_COMPLETED)}
    assert ran == {"start", "route", f"{route}_path"}


async def test_a_loop_runs_until_the_router_leaves_it(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = drafting_loop()
    events = await run(engine, spec_of(document, nodes), {"topic": "loops"})
    assert terminal(events).data["outputs"] == {"drafts": 3}
    assert types_for(events, "draft").count("node_completed") == 3
    routes = [e.data["output"]["route"] for e in for_node(events, "review") if e.data.get("output")]
    assert routes == ["again", "again", "done"]


async def test_max_iterations_forces_the_default_route_on_the_routers_last_allowed_run(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = workflow(
        [
            plugin_node("draft", "test.echo"),
            {
                "id": "review",
                "type": "router",
                "config": {
                    "routes": [{"name": "again", "when": "true"}],
                    "default": "done",
                    "max_iterations": 4,
                },
            },
            plugin_node("publish", "test.echo"),
        ],
        [
            ("start", "draft"),
            ("draft", "review"),
            ("review", "draft", "again"),
            ("review", "publish", "done"),
        ],
        {"visits": "nodes.draft.output.visit", "published": "nodes.publish.output.visit"},
    )
    events = await run(engine, spec_of(document, nodes))
    assert terminal(events).data["outputs"] == {"visits": 4, "published": 1}
    last_review = [e for e in for_node(events, "review") if e.type is EventType.NODE_COMPLETED][-1]
    assert last_review.data["output"] == {"route": "done", "iteration": 4, "forced": True}


@pytest.mark.parametrize(
    ("take", "joined", "skipped"),
    [(True, "side+picked", "other"), (False, "side+other", "picked")],
)
async def test_an_aggregator_joins_the_branches_that_ran_and_skips_routes_not_taken(
    engine: ExecutionEngine, nodes: ControlledNodes, take: bool, joined: str, skipped: str
) -> None:
    document = workflow(
        [
            {
                "id": "pick",
                "type": "router",
                "config": {"routes": [{"name": "yes", "when": "inputs.take"}], "default": "no"},
            },
            plugin_node("side", "test.text", value="side"),
            plugin_node("picked", "test.text", value="picked"),
            plugin_node("other", "test.text", value="other"),
            {"id": "join", "type": "aggregator", "config": {"strategy": "text", "separator": "+"}},
        ],
        [
            ("start", "side"),
            ("start", "pick"),
            ("pick", "picked", "yes"),
            ("pick", "other", "no"),
            ("side", "join"),
            ("picked", "join"),
            ("other", "join"),
        ],
        {"joined": "nodes.join.output.text"},
        inputs={"take": {"type": "boolean"}},
    )
    events = await run(engine, spec_of(document, nodes), {"take": take})
    assert terminal(events).data["outputs"] == {"joined": joined}
    assert not for_node(events, skipped)
    assert types_for(events, "join") == ["node_started", "node_completed"]


async def test_a_router_can_route_straight_into_an_aggregator(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = workflow(
        [
            {
                "id": "pick",
                "type": "router",
                "config": {"routes": [{"name": "now", "when": "true"}], "default": "later"},
            },
            plugin_node("side", "test.text", value="side"),
            plugin_node("later_step", "test.text", value="later"),
            {"id": "join", "type": "aggregator", "config": {"strategy": "object"}},
        ],
        [
            ("start", "pick"),
            ("start", "side"),
            ("pick", "join", "now"),
            ("pick", "later_step", "later"),
            ("side", "join"),
            ("later_step", "join"),
        ],
        {"joined": "nodes.join.output"},
    )
    events = await run(engine, spec_of(document, nodes))
    assert terminal(events).data["outputs"]["joined"] == {
        "pick": {"route": "now", "iteration": 1},
        "side": {"text": "side"},
    }
    assert not for_node(events, "later_step")


# --- failures, retries, timeouts ---


async def test_retryable_failures_are_retried_with_every_attempt_visible(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    node = plugin_node("flaky", "test.flaky", fail_times=2) | {"retry": FAST_RETRY}
    spec = spec_of(workflow([node], [("start", "flaky")], {"on": "nodes.flaky.output"}), nodes)
    events = await run(engine, spec)
    flaky = for_node(events, "flaky")
    assert [(e.type.value, e.attempt) for e in flaky] == [
        ("node_started", 1),
        ("node_failed", 1),
        ("node_started", 2),
        ("node_failed", 2),
        ("node_started", 3),
        ("node_completed", 3),
    ]
    failed = of_type(flaky, EventType.NODE_FAILED)
    assert all(e.data["will_retry"] and e.data["retry_in"] >= 0 for e in failed)
    assert failed[0].data["code"] == "provider.unavailable"
    end = terminal(events)
    assert end.data["outputs"] == {"on": {"succeeded_on": 3}}
    assert end.data["retried_failures"] == 2


async def test_a_node_that_keeps_failing_fails_the_run_with_its_reason(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    node = plugin_node("flaky", "test.flaky", fail_times=5) | {"retry": FAST_RETRY}
    spec = spec_of(workflow([node], [("start", "flaky")], {"on": "nodes.flaky.output"}), nodes)
    events = await run(engine, spec)
    failed = of_type(for_node(events, "flaky"), EventType.NODE_FAILED)
    assert [e.data["will_retry"] for e in failed] == [True, True, False]
    assert "retry_in" not in failed[-1].data
    end = terminal(events)
    assert end.type is EventType.EXECUTION_FAILED
    assert end.data["error"] == {
        "code": "provider.unavailable",
        "message": "attempt 3 failed on purpose",
        "node_id": "flaky",
    }


async def test_non_retryable_failures_are_not_retried(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    node = plugin_node("bad", "test.flaky", fail_times=5, code="provider.rejected", retryable=False)
    node["retry"] = FAST_RETRY
    spec = spec_of(workflow([node], [("start", "bad")], {"on": "nodes.bad.output"}), nodes)
    events = await run(engine, spec)
    assert nodes.calls == [("bad", 1)]
    assert terminal(events).data["error"]["code"] == "provider.rejected"


async def test_a_node_timeout_fails_the_attempt_with_a_deadline_code_and_is_retried(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    node = plugin_node("stuck", "test.block") | {
        "timeout": 0.05,
        "retry": FAST_RETRY | {"max_attempts": 2},
    }
    spec = spec_of(workflow([node], [("start", "stuck")], {"on": "nodes.stuck.output"}), nodes)
    events = await run(engine, spec)
    failed = of_type(for_node(events, "stuck"), EventType.NODE_FAILED)
    assert [(e.attempt, e.data["code"], e.data["will_retry"]) for e in failed] == [
        (1, "node.deadline_exceeded", True),
        (2, "node.deadline_exceeded", False),
    ]
    assert nodes.cancelled == ["stuck", "stuck"]
    assert terminal(events).data["error"]["node_id"] == "stuck"


async def test_the_execution_timeout_stops_the_run_and_names_the_interrupted_nodes(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    spec = spec_of(
        workflow([plugin_node("stuck", "test.block")], [("start", "stuck")], {"o": "nodes.stuck"}),
        nodes,
    )
    events = await run(engine, spec, timeout=0.2)
    end = terminal(events)
    assert end.type is EventType.EXECUTION_FAILED
    assert end.data["error"]["code"] == "execution.deadline_exceeded"
    assert end.data["interrupted_nodes"] == ["stuck"]
    assert nodes.cancelled == ["stuck"]


async def test_a_crashing_node_fails_with_an_internal_code_not_a_crash_of_the_engine(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    node = plugin_node("oops", "test.crash") | {"retry": FAST_RETRY}
    spec = spec_of(workflow([node], [("start", "oops")], {"o": "nodes.oops.output"}), nodes)
    events = await run(engine, spec)
    assert nodes.calls == [("oops", 1)]
    assert terminal(events).data["error"] == {
        "code": "node.internal",
        "message": "ValueError: a bug in the plugin",
        "node_id": "oops",
    }


async def test_a_template_that_fails_at_run_time_fails_its_node_with_a_template_code(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    node = plugin_node("greet", "test.echo", value="{{ inputs.person.name }}")
    spec = spec_of(
        workflow(
            [node],
            [("start", "greet")],
            {"o": "nodes.greet.output"},
            inputs={"person": {"type": "object", "default": {}}},
        ),
        nodes,
    )
    events = await run(engine, spec)
    error = terminal(events).data["error"]
    assert error["code"] == "template.undefined"
    assert "node 'greet' config.value" in error["message"]


async def test_an_output_reading_a_node_that_did_not_run_fails_the_run_clearly(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = triage()
    document["outputs"]["big"] = {"from": "nodes.big_path.output.value"}
    events = await run(engine, spec_of(document, nodes), {"amount": 1})
    end = terminal(events)
    assert end.type is EventType.EXECUTION_FAILED
    assert end.data["error"]["code"] == "template.undefined"
    assert "output 'big'" in end.data["error"]["message"]


async def test_a_plugin_type_without_an_implementation_fails_its_node(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    from agentflow_grpc.spec import PluginType

    nodes.registry.register_plugin(PluginType("test.schema_only"))
    spec = spec_of(
        workflow([plugin_node("x", "test.schema_only")], [("start", "x")], {"o": "nodes.x.output"}),
        nodes,
    )
    events = await run(engine, spec)
    assert terminal(events).data["error"]["code"] == "plugin.not_runnable"


# --- cancellation ---


def blocking_spec(nodes: ControlledNodes) -> WorkflowSpec:
    return spec_of(
        workflow(
            [
                plugin_node("left", "test.block", signal="left"),
                plugin_node("right", "test.block", signal="right"),
                {"id": "join", "type": "aggregator"},
            ],
            [("start", "left"), ("start", "right"), ("left", "join"), ("right", "join")],
            {"o": "nodes.join.output"},
        ),
        nodes,
    )


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def test_closing_the_event_stream_cancels_the_run_and_leaves_no_task(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    before = other_tasks()
    events = engine.execute(blocking_spec(nodes), {}, sources=SourceSet([]))
    async for event in events:
        if nodes.signals["left"].is_set() and nodes.signals["right"].is_set():
            break
        assert event.type is not EventType.EXECUTION_COMPLETED
    await events.aclose()  # type: ignore[attr-defined]
    assert sorted(nodes.cancelled) == ["left", "right"]
    assert other_tasks() == before


async def test_cancel_ends_the_stream_with_execution_cancelled(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    before = other_tasks()
    execution = engine.start(blocking_spec(nodes), {}, sources=SourceSet([]))
    seen: list[ExecutionEvent] = []
    async for event in execution.events():
        seen.append(event)
        if nodes.signals["left"].is_set() and nodes.signals["right"].is_set():
            execution.cancel("the user pressed stop")
    assert_well_formed(seen)
    end = terminal(seen)
    assert end.type is EventType.EXECUTION_CANCELLED
    assert end.data["reason"] == "the user pressed stop"
    assert end.data["interrupted_nodes"] == ["left", "right"]
    assert sorted(nodes.cancelled) == ["left", "right"]
    assert other_tasks() == before


async def test_cancelling_the_reading_task_cancels_the_run(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    before = other_tasks()

    async def read() -> None:
        async for _ in engine.execute(blocking_spec(nodes), {}, sources=SourceSet([])):
            pass

    reader = asyncio.create_task(read())
    await nodes.signals["left"].wait()
    await nodes.signals["right"].wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert sorted(nodes.cancelled) == ["left", "right"]
    assert other_tasks() == before


# --- compiled graph cache ---


async def test_a_spec_is_compiled_once_and_reused(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = triage()
    spec = spec_of(document, nodes)
    reordered = spec_of(dict(reversed(list(document.items()))), nodes)
    await run(engine, spec, {"amount": 1})
    await run(engine, reordered, {"amount": 500})
    assert (engine.cache.misses, engine.cache.hits) == (1, 1)
    changed = spec_of(triage(default_route="fallback"), nodes)
    await run(engine, changed, {"amount": 0})
    assert (engine.cache.misses, len(engine.cache)) == (2, 2)


async def test_a_summarize_aggregator_asks_the_model_to_merge_the_branch_texts(
    engine: ExecutionEngine, nodes: ControlledNodes, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="Merge for", reply="one merged brief")
    spec = spec_of(
        workflow(
            [
                plugin_node("pros", "test.text", value="cheap"),
                plugin_node("cons", "test.text", value="slow"),
                {
                    "id": "merge",
                    "type": "aggregator",
                    "source": "llm",
                    "config": {
                        "strategy": "summarize",
                        "separator": "\n---\n",
                        "prompt": "Merge for {{ inputs.reader }}:",
                        "model": "fake-large",
                    },
                },
            ],
            [("start", "pros"), ("start", "cons"), ("pros", "merge"), ("cons", "merge")],
            {"brief": "nodes.merge.output.text"},
            inputs={"reader": {"type": "string"}},
        ),
        nodes,
    )
    sources = SourceSet([llm_source("llm", "openai", provider.url)])
    try:
        events = await collect(engine.execute(spec, {"reader": "the board"}, sources=sources))
    finally:
        await sources.aclose()
    end = terminal(events)
    assert end.data["outputs"] == {"brief": "one merged brief"}
    (request,) = provider.requests
    assert request.body["model"] == "fake-large"
    assert request.body["messages"] == [
        {"role": "user", "content": "Merge for the board:\n---\ncheap\n---\nslow"}
    ]
    tokens = "".join(e.data["text"] for e in of_type(events, EventType.NODE_TOKEN))
    assert tokens == "one merged brief"
    assert end.data["usage"]["total_tokens"] > 0


async def test_an_execution_cancelled_before_it_starts_reports_it_and_runs_nothing(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    execution = engine.start(blocking_spec(nodes), {}, sources=SourceSet([]))
    execution.cancel("changed my mind")
    events = await asyncio.wait_for(collect(execution.events()), timeout=5)
    assert [e.type for e in events] == [
        EventType.EXECUTION_STARTED,
        EventType.EXECUTION_CANCELLED,
    ]
    assert events[-1].data["reason"] == "changed my mind"
    assert nodes.calls == []


async def test_a_cancel_right_after_iteration_starts_is_not_lost(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    execution = engine.start(blocking_spec(nodes), {}, sources=SourceSet([]))
    events = execution.events()
    reader = asyncio.create_task(collect(events))
    await asyncio.sleep(0)  # the producer task exists, but has not run yet
    execution.cancel("stop")
    collected = await asyncio.wait_for(reader, timeout=5)
    assert collected[-1].type is EventType.EXECUTION_CANCELLED
    assert_well_formed(collected)


async def test_an_aggregator_inside_a_loop_joins_once_per_iteration(
    engine: ExecutionEngine, nodes: ControlledNodes
) -> None:
    document = workflow(
        [
            plugin_node("draft", "test.echo"),
            plugin_node("left", "test.text", value="L{{ nodes.draft.output.visit }}"),
            plugin_node("right", "test.sleep", seconds=0.01),
            {"id": "join", "type": "aggregator", "config": {"strategy": "object"}},
            {
                "id": "review",
                "type": "router",
                "config": {
                    "routes": [{"name": "again", "when": "nodes.draft.output.visit < 3"}],
                    "default": "done",
                    "max_iterations": 5,
                },
            },
            plugin_node("publish", "test.echo", value="{{ nodes.join.output.left.text }}"),
        ],
        [
            ("start", "draft"),
            ("draft", "left"),
            ("draft", "right"),
            ("left", "join"),
            ("right", "join"),
            ("join", "review"),
            ("review", "draft", "again"),
            ("review", "publish", "done"),
        ],
        {"last": "nodes.publish.output.value"},
    )
    events = await run(engine, spec_of(document, nodes))
    assert terminal(events).data["outputs"] == {"last": "L3"}
    joins = [e for e in for_node(events, "join") if e.type is EventType.NODE_COMPLETED]
    assert [sorted(e.data["output"]) for e in joins] == [["left", "right"]] * 3
    assert [e.data["output"]["left"]["text"] for e in joins] == ["L1", "L2", "L3"]
