"""Benchmark: validating a generated 1,000-node WorkflowSpec.

    python bench/validate.py [--nodes 1000] [--runs 30]

"cold" clears the template and SQL analysis caches before every run (a spec never seen before);
"warm" keeps them (the same spec validated again, as on update-then-execute). Prints milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from agentflow_grpc.spec import validate_spec
from agentflow_grpc.spec.checks import node_configs
from agentflow_grpc.spec.templates import analyze


def hole(expression: str) -> str:
    return "{{ " + expression + " }}"


def generate_spec(target_nodes: int) -> dict[str, Any]:
    """A realistic large workflow: fan-outs joined by aggregators, routers whose branches
    (llm, http, database) converge again, and plain llm chains, repeated until the size is met."""
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "input"}]
    edges: list[dict[str, Any]] = []
    previous = "start"
    stage = 0

    def llm(node_id: str, prompt: str) -> dict[str, Any]:
        return {
            "id": node_id,
            "type": "llm",
            "source": "openai-main",
            "timeout": 30,
            "retry": {"max_attempts": 3},
            "config": {"model": "gpt-4o-mini", "system": "You are precise.", "prompt": prompt},
        }

    def connect(source: str, target: str, route: str | None = None) -> None:
        edges.append({"from": source, "to": target} | ({"route": route} if route else {}))

    while len(nodes) < target_nodes:
        stage += 1
        room = target_nodes - len(nodes)
        kind = stage % 3 if room >= 5 else 2
        if kind == 0:  # fan-out of three, joined by an aggregator
            branch_ids = [f"s{stage}_branch{i}" for i in range(3)]
            for i, branch in enumerate(branch_ids):
                nodes.append(
                    llm(
                        branch,
                        f"Angle {i} on {hole('inputs.topic')}: "
                        + hole(f"nodes.{previous}.output.text"),
                    )
                )
                connect(previous, branch)
            join = f"s{stage}_join"
            nodes.append({"id": join, "type": "aggregator", "config": {"strategy": "text"}})
            for branch in branch_ids:
                connect(branch, join)
            previous = join
        elif kind == 1:  # router: llm, http or database, converging on one llm
            router, a, b, c, merge = (f"s{stage}_{n}" for n in ("route", "a", "b", "c", "merge"))
            nodes.append(
                {
                    "id": router,
                    "type": "router",
                    "config": {
                        "routes": [
                            {"name": "ask", "when": f"nodes.{previous}.output.score > 0.5"},
                            {"name": "fetch", "when": "inputs.mode == 'fetch'"},
                        ],
                        "default": "lookup",
                    },
                }
            )
            nodes.append(
                llm(a, f"Answer {hole('inputs.question')} using {hole(f'nodes.{previous}.output')}")
            )
            nodes.append(
                {
                    "id": b,
                    "type": "http",
                    "source": "crm-api",
                    "config": {
                        "method": "POST",
                        "url": "/records/" + hole(f"nodes.{previous}.output.id"),
                        "headers": {"x-trace": "{{ inputs.topic }}"},
                        "body": {"query": "{{ inputs.question }}", "stage": stage},
                        "extract": {"name": "$.record.name", "tags": "$.record.tags[*]"},
                    },
                }
            )
            nodes.append(
                {
                    "id": c,
                    "type": "database",
                    "source": "warehouse-db",
                    "config": {
                        "query": "select name, total from orders "
                        "where customer = $1 and total > $2",
                        "params": [
                            "{{ inputs.customer }}",
                            hole(f"nodes.{previous}.output.score"),
                        ],
                    },
                }
            )
            nodes.append(
                llm(
                    merge,
                    f"{{% if nodes.{a} is defined %}}{hole(f'nodes.{a}.output.text')}"
                    f"{{% elif nodes.{b} is defined %}}{hole(f'nodes.{b}.output | tojson')}"
                    f"{{% else %}}{hole(f'nodes.{c}.output | tojson')}{{% endif %}}",
                )
            )
            connect(previous, router)
            connect(router, a, "ask")
            connect(router, b, "fetch")
            connect(router, c, "lookup")
            for branch in (a, b, c):
                connect(branch, merge)
            previous = merge
        else:  # a short chain
            for step in range(min(2, room)):
                node_id = f"s{stage}_step{step}"
                nodes.append(llm(node_id, "Refine: " + hole(f"nodes.{previous}.output.text")))
                connect(previous, node_id)
                previous = node_id
    return {
        "api_version": "agentflow/v1",
        "name": "generated-large",
        "inputs": {
            "topic": {"type": "string"},
            "question": {"type": "string"},
            "customer": {"type": "string"},
            "mode": {"type": "string", "enum": ["ask", "fetch"], "default": "ask"},
        },
        "outputs": {"result": {"from": f"nodes.{previous}.output"}},
        "nodes": nodes,
        "edges": edges,
    }


def _clear_caches() -> None:
    analyze.cache_clear()
    node_configs._sql_problems.cache_clear()
    node_configs._json_path_error.cache_clear()


def _measure(spec: dict[str, Any], runs: int, cold: bool) -> list[float]:
    timings = []
    for _ in range(runs):
        if cold:
            _clear_caches()
        started = time.perf_counter()
        result = validate_spec(spec)
        timings.append((time.perf_counter() - started) * 1000)
        assert result.ok, result.violations[:3]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    spec = generate_spec(args.nodes)
    validate_spec(spec)  # import-time and first-use costs are not part of the figure
    print(f"spec: {len(spec['nodes'])} nodes, {len(spec['edges'])} edges, {args.runs} runs each")
    for label, cold in (("cold", True), ("warm", False)):
        timings = _measure(spec, args.runs, cold)
        print(
            f"validate {label}: median {statistics.median(timings):.1f} ms, "
            f"min {min(timings):.1f} ms, max {max(timings):.1f} ms"
        )


if __name__ == "__main__":
    main()
