"""Small spec documents shared by the spec tests (imported, not collected)."""

from __future__ import annotations

from typing import Any


def spec_with_node(
    node: dict[str, Any], *, inputs: dict[str, Any] | None = None, name: str = "single-node"
) -> dict[str, Any]:
    """A workflow `start -> node` whose one output reads the node; `node` needs an `id`."""
    return {
        "api_version": "agentflow/v1",
        "name": name,
        "inputs": inputs if inputs is not None else {},
        "outputs": {"result": {"from": f"nodes.{node['id']}.output"}},
        "nodes": [{"id": "start", "type": "input"}, node],
        "edges": [{"from": "start", "to": node["id"]}],
    }
