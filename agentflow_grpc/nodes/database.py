"""The database node: one parameterized statement; values only ever travel as bind parameters.

Output: `{"rows": [{column: value}, …], "columns": […], "row_count": n, "truncated": bool}`.
"""

from __future__ import annotations

from agentflow_grpc.nodes.base import NodeContext, NodeResult
from agentflow_grpc.spec import DatabaseNode


class DatabaseHandler:
    async def run(self, node: DatabaseNode, context: NodeContext) -> NodeResult:
        config = node.config
        params = [
            context.render_value(param, f"config.params[{index}]")
            for index, param in enumerate(config.params)
        ]
        database = await context.database(node.source)
        with context.timing_call():
            result = await database.fetch(
                config.query,
                params,
                read_only=config.read_only,
                max_rows=config.max_rows,
                statement_timeout=config.statement_timeout,
            )
        return NodeResult(
            {
                "rows": result.rows,
                "columns": result.columns,
                "row_count": len(result.rows),
                "truncated": result.truncated,
            }
        )
