"""Create a workflow from a JSON spec file, run it and print each event as it arrives.

    python examples/create_and_run.py --target localhost:50051 --api-key "$AGENTFLOW_API_KEY" \\
        ../../examples/support-triage.json subject="Refund" body="I was charged twice."

A NAME=VALUE input is a string when the spec declares it a string (or not at all), JSON otherwise
(`count=3`, `tags='["a", "b"]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from agentflow_client import (
    CreateWorkflowRequest,
    ExecuteWorkflowRequest,
    ExecutionServiceStub,
    Struct,
    Workflow,
    WorkflowServiceStub,
    connect,
)
from grpclib.exceptions import GRPCError


def parse_inputs(spec: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    declared = spec.get("inputs") or {}
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        if not separator or not name:
            raise SystemExit(f"input {pair!r}: expected NAME=VALUE")
        if declared.get(name, {}).get("type", "string") == "string":
            inputs[name] = text
            continue
        try:
            inputs[name] = json.loads(text)
        except json.JSONDecodeError:
            raise SystemExit(f"input {name}: {text!r} is not JSON") from None
    return inputs


async def run(
    target: str, api_key: str | None, spec: dict[str, Any], inputs: dict[str, Any]
) -> int:
    async with connect(target, api_key) as channel:
        workflow = await WorkflowServiceStub(channel).create_workflow(
            CreateWorkflowRequest(workflow=Workflow(spec=Struct.from_dict(spec)))
        )
        print(f"created {workflow.name} (version {workflow.version})")
        request = ExecuteWorkflowRequest(workflow=workflow.name, inputs=Struct.from_dict(inputs))
        failed = False
        async for event in ExecutionServiceStub(channel).execute_workflow(request):
            data = event.data.to_dict() if event.data is not None else {}
            node = f" {event.node_id}" if event.node_id else ""
            print(f"{event.sequence:>4} {event.type}{node} {json.dumps(data)}", flush=True)
            failed = event.type in ("execution_failed", "execution_cancelled")
        return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the server")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("AGENTFLOW_API_KEY"),
        help="sent as x-api-key (default: $AGENTFLOW_API_KEY)",
    )
    parser.add_argument("spec", type=Path, help="a WorkflowSpec JSON file")
    parser.add_argument("inputs", nargs="*", metavar="NAME=VALUE", help="workflow inputs")
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    inputs = parse_inputs(spec, args.inputs)
    try:
        return asyncio.run(run(args.target, args.api_key, spec, inputs))
    except GRPCError as error:
        print(f"error: {error.status.name}: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
