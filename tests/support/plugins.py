"""Plugin node types for runtime tests: they sleep, fail, block and signal on command.

They register through the same `NodeRegistry` as real plugins, so tests exercise the real
compiler, scheduler, retries and events with nodes whose behaviour the test controls.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.base import NodeContext
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.spec import PluginNode, WorkflowSpec, validate_spec


@dataclass
class _Plugin:
    name: str
    behaviour: Any
    config_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    template_keys: frozenset[str] = frozenset({"value"})
    source_types: frozenset[str] = frozenset()

    async def run(self, node: PluginNode, context: NodeContext) -> Any:
        return await self.behaviour(node, context)


class ControlledNodes:
    """A registry of test plugins sharing one place for signals and observations."""

    def __init__(self) -> None:
        self.signals: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.calls: list[tuple[str, int]] = []  # (node id, attempt) per call
        self.cancelled: list[str] = []
        self.registry = NodeRegistry(
            [
                _Plugin("test.echo", self._echo),
                _Plugin("test.text", self._text),
                _Plugin("test.sleep", self._sleep),
                _Plugin("test.flaky", self._flaky),
                _Plugin("test.block", self._block),
                _Plugin("test.crash", self._crash),
            ]
        )

    async def _echo(self, node: PluginNode, context: NodeContext) -> Any:
        """Output: the rendered `value`, plus the attempt and visit counters."""
        self.calls.append((node.id, context.attempt))
        await self._wait_and_signal(node)
        value = context.render_json(node.config.get("value"), "config.value")
        return {"value": value, "attempt": context.attempt, "visit": context.visits}

    async def _text(self, node: PluginNode, context: NodeContext) -> Any:
        """Output: `{"text": rendered value}`, like an llm node's."""
        self.calls.append((node.id, context.attempt))
        return {"text": context.render(str(node.config.get("value", "")), "config.value")}

    async def _sleep(self, node: PluginNode, context: NodeContext) -> Any:
        self.calls.append((node.id, context.attempt))
        await asyncio.sleep(float(node.config.get("seconds", 0)))  # type: ignore[arg-type]
        return {"slept": node.config.get("seconds", 0)}

    async def _flaky(self, node: PluginNode, context: NodeContext) -> Any:
        """Fails the first `fail_times` attempts with `code` (retryable unless told otherwise)."""
        self.calls.append((node.id, context.attempt))
        if context.attempt <= int(node.config.get("fail_times", 1)):  # type: ignore[arg-type]
            raise NodeFailure(
                str(node.config.get("code", "provider.unavailable")),
                f"attempt {context.attempt} failed on purpose",
                retryable=bool(node.config.get("retryable", True)),
            )
        return {"succeeded_on": context.attempt}

    async def _block(self, node: PluginNode, context: NodeContext) -> Any:
        """Signals `signal` (if any) and waits forever; records its cancellation."""
        self.calls.append((node.id, context.attempt))
        try:
            await self._wait_and_signal(node)
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(node.id)
            raise
        return None

    async def _crash(self, node: PluginNode, context: NodeContext) -> Any:
        self.calls.append((node.id, context.attempt))
        raise ValueError("a bug in the plugin")

    async def _wait_and_signal(self, node: PluginNode) -> None:
        wait_for = node.config.get("wait_for")
        if isinstance(wait_for, str):
            await self.signals[wait_for].wait()
        signal = node.config.get("signal")
        if isinstance(signal, str):
            self.signals[signal].set()


def plugin_node(node_id: str, plugin: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "plugin", "plugin": plugin, "config": config}


def workflow(
    nodes: list[dict[str, Any]],
    edges: Sequence[tuple[str, str] | tuple[str, str, str | None]],
    outputs: dict[str, str],
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A spec document with an input node `start` first; edges as (from, to[, route])."""
    return {
        "api_version": "agentflow/v1",
        "name": "test-flow",
        "inputs": inputs or {},
        "outputs": {name: {"from": expression} for name, expression in outputs.items()},
        "nodes": [{"id": "start", "type": "input"}, *nodes],
        "edges": [
            {
                "from": edge[0],
                "to": edge[1],
                **({"route": edge[2]} if edge[2:3] != (None,) and len(edge) == 3 else {}),
            }
            for edge in edges
        ],
    }


def plugin_spec(document: dict[str, Any], nodes: ControlledNodes) -> WorkflowSpec:
    """The spec of a document that must validate, with `nodes`' plugins."""
    result = validate_spec(document, plugins=nodes.registry.catalog)
    assert result.ok, result.violations
    assert result.spec is not None
    return result.spec


def drafting_loop() -> dict[str, Any]:
    """start → draft → review (a router: `again` back to draft while the draft's visit is below
    3, else `done`) → publish, whose output is the last draft's visit: 3."""
    return workflow(
        [
            plugin_node("draft", "test.echo", value="{{ inputs.topic }}"),
            {
                "id": "review",
                "type": "router",
                "config": {
                    "routes": [{"name": "again", "when": "nodes.draft.output.visit < 3"}],
                    "default": "done",
                    "max_iterations": 10,
                },
            },
            plugin_node("publish", "test.echo", value="{{ nodes.draft.output.visit }}"),
        ],
        [
            ("start", "draft"),
            ("draft", "review"),
            ("review", "draft", "again"),
            ("review", "publish", "done"),
        ],
        {"drafts": "nodes.publish.output.value"},
        inputs={"topic": {"type": "string"}},
    )
