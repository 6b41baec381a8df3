"""One registry of node implementations: the built-in node types and installed plugins.

The built-in types are listed once in `BUILTIN_HANDLERS`. Plugins come from the
`agentflow.plugins` entry-point group (or `register_plugin`); the same objects feed the
validator's `PluginCatalog`, so what validates is what runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.aggregator import AggregatorHandler
from agentflow_grpc.nodes.base import NodeContext, NodeHandler, NodeResult
from agentflow_grpc.nodes.database import DatabaseHandler
from agentflow_grpc.nodes.http import HttpHandler
from agentflow_grpc.nodes.image import ImageHandler
from agentflow_grpc.nodes.input import InputHandler
from agentflow_grpc.nodes.llm import LlmHandler
from agentflow_grpc.nodes.plugin import RunnablePlugin
from agentflow_grpc.nodes.router import RouterHandler
from agentflow_grpc.spec import NODE_TYPES, PluginCatalog

BUILTIN_HANDLERS: Mapping[str, NodeHandler] = {
    "input": InputHandler(),
    "router": RouterHandler(),
    "llm": LlmHandler(),
    "image": ImageHandler(),
    "database": DatabaseHandler(),
    "aggregator": AggregatorHandler(),
    "http": HttpHandler(),
}
assert set(BUILTIN_HANDLERS) == set(NODE_TYPES) - {"plugin"}, "every node type needs a handler"


class NodeRegistry:
    def __init__(self, plugins: Iterable[object] = ()) -> None:
        self._handlers = dict(BUILTIN_HANDLERS)
        self._plugins: dict[str, RunnablePlugin] = {}
        self.catalog = PluginCatalog()
        for plugin in plugins:
            self.register_plugin(plugin)

    @classmethod
    def from_entry_points(cls) -> NodeRegistry:
        registry = cls()
        for plugin in PluginCatalog.from_entry_points().plugins():
            registry.register_plugin(plugin)
        return registry

    def register_plugin(self, plugin: object) -> None:
        """Add a plugin type; it runs when it has `run(node, context)`, else only validates."""
        self.catalog.register(plugin)
        if isinstance(plugin, RunnablePlugin):
            self._plugins[plugin.name] = plugin

    async def run(self, node: Any, context: NodeContext) -> NodeResult:
        if node.type != "plugin":
            return await self._handlers[node.type].run(node, context)
        plugin = self._plugins.get(node.plugin)
        if plugin is None:
            known = ", ".join(sorted(self._plugins)) or "none"
            raise NodeFailure(
                "plugin.not_runnable",
                f"no installed plugin runs type {node.plugin!r} (runnable: {known})",
            )
        result = await plugin.run(node, context)
        return result if isinstance(result, NodeResult) else NodeResult(result)
