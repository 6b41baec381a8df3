"""The router node: takes the first route whose condition is true, else the default.

On a loop, `max_iterations` bounds how often the router runs: its last allowed run takes the
default route (which leaves the loop), and a run beyond the bound fails.
"""

from __future__ import annotations

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.spec import RouterNode


class RouterHandler:
    async def run(self, node: RouterNode, context: NodeContext) -> NodeResult:
        limit = node.config.max_iterations
        if limit is not None and context.visits > limit:
            raise NodeFailure(
                "router.max_iterations",
                f"router {node.id!r} ran {context.visits} times, more than its max_iterations "
                f"({limit}); its default route must leave the loop",
            )
        if limit is not None and context.visits == limit:
            return NodeResult(
                {"route": node.config.default, "iteration": context.visits, "forced": True},
                route=node.config.default,
            )
        chosen = node.config.default
        for index, route in enumerate(node.config.routes):
            if context.evaluate(route.when, f"route {index} ({route.name!r}) condition"):
                chosen = route.name
                break
        return NodeResult({"route": chosen, "iteration": context.visits}, route=chosen)
