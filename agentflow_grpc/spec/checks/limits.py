"""Size limits: node and edge counts, prompt length."""

from __future__ import annotations

from collections.abc import Iterator

from agentflow_grpc.spec.checks.context import CheckContext
from agentflow_grpc.spec.codes import Violation, ViolationCode, pointer


def check_limits(ctx: CheckContext) -> Iterator[Violation]:
    limits = ctx.limits
    if ctx.view.node_count > limits.max_nodes:
        yield Violation(
            "/nodes",
            ViolationCode.LIMIT_TOO_MANY_NODES,
            f"{ctx.view.node_count} nodes exceed the limit of {limits.max_nodes}",
        )
    if ctx.view.edge_count > limits.max_edges:
        yield Violation(
            "/edges",
            ViolationCode.LIMIT_TOO_MANY_EDGES,
            f"{ctx.view.edge_count} edges exceed the limit of {limits.max_edges}",
        )
    for entry in ctx.view.nodes:
        for field in ctx.template_fields[entry.id]:
            if field.is_prompt and len(field.text) > limits.max_prompt_chars:
                yield Violation(
                    pointer("nodes", entry.index, *field.location),
                    ViolationCode.LIMIT_PROMPT_TOO_LARGE,
                    f"prompt of {len(field.text)} characters exceeds the limit of "
                    f"{limits.max_prompt_chars}",
                )
