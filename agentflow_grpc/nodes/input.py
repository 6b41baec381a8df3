"""The input node: the run's inputs, checked against the declared schema, defaults applied."""

from __future__ import annotations

from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.spec import InputNode


class InputHandler:
    async def run(self, node: InputNode, context: NodeContext) -> NodeResult:
        # The engine checked the inputs (with InputChecker) before any node ran; they arrive here
        # with defaults applied, and this node makes them `nodes.<id>.output`.
        return NodeResult(dict(context.inputs))
