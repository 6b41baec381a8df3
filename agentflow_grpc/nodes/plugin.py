"""Plugin nodes: custom node types from installed packages.

A plugin is a `PluginDefinition` (name, config schema, template keys, source types) that also
has `async def run(node, context) -> NodeResult`. It registers in the same registry as the built-in
nodes, from the `agentflow.plugins` entry-point group.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.spec import PluginNode


@runtime_checkable
class RunnablePlugin(Protocol):
    name: str

    async def run(self, node: PluginNode, context: NodeContext) -> NodeResult | Any: ...
