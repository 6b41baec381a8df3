"""Helpers for the stats dashboard's tests (GetStats): a tenant's mix of runs made through the
real gRPC API on the fake provider, and the numbers expected of them, computed here from the
stored rows (read as the database's owner) rather than by the code under test."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf import json_format

from agentflow_grpc._gen.agentflow.v1 import (
    execution_pb2 as ex,
)
from agentflow_grpc._gen.agentflow.v1 import (
    observability_pb2,
    observability_pb2_grpc,
    source_pb2,
    workflow_pb2,
)
from agentflow_grpc.testing import FakeProviderServer
from support.api_helpers import FINAL_STATES, Client, Metadata, eventually, struct
from support.provider import SLOW
from support.runs import answer_spec

PRICED_MODEL = "gpt-4o-mini"  # a model genai-prices knows
UNPRICED_MODEL = "fake-model"  # one it does not
# gpt-4o-mini's list price in USD per token (input, output), as genai-prices has it.
GPT_4O_MINI_PRICE = (0.15 / 1_000_000, 0.60 / 1_000_000)
REFUSE = "[refuse]"  # questions holding this fail: the provider answers 400

STATES = {
    "completed": ("completed",),
    "failed": ("failed",),
    "cancelled": ("cancelled",),
    "active": ("pending", "running"),
}


def observability(client: Client) -> observability_pb2_grpc.ObservabilityServiceStub:
    return observability_pb2_grpc.ObservabilityServiceStub(client.channel)


def script_provider(provider: FakeProviderServer) -> None:
    """REFUSE questions get a 400; SLOW ones an answer after 30 s (runs that stay active)."""
    provider.add_rule(contains=REFUSE, status=400, message="the model refuses this prompt")
    provider.add_rule(contains=SLOW, delay=30)


@dataclass
class Workflows:
    priced: str  # `workflows/{id}`: an llm node on a gpt-4o-mini source
    unpriced: str  # the same on a fake-model source


async def prepare(client: Client, md: Metadata, provider: FakeProviderServer) -> Workflows:
    """Two `openai` sources on the fake provider, one per model, and a workflow on each."""
    names = []
    for source_name, model in (("openai-main", PRICED_MODEL), ("local", UNPRICED_MODEL)):
        source = source_pb2.Source(
            display_name=source_name,
            type="openai",
            config=struct({"base_url": f"{provider.url}/v1", "model": model}),
            secrets={"api_key": "sk-stats-test"},
        )
        await client.sources.CreateSource(
            source_pb2.CreateSourceRequest(source=source), metadata=md
        )
        spec = answer_spec(f"answer-{source_name}")
        spec["nodes"][1]["source"] = source_name
        workflow = await client.workflows.CreateWorkflow(
            workflow_pb2.CreateWorkflowRequest(workflow=workflow_pb2.Workflow(spec=struct(spec))),
            metadata=md,
        )
        names.append(workflow.name)
    return Workflows(*names)


async def execute(
    client: Client,
    md: Metadata,
    question: str | None,
    *,
    workflow: str = "",
    spec: Any = None,
    inputs: dict[str, Any] | None = None,
) -> str:
    """A streamed run (ExecuteWorkflow) to its end, with input `question` (or `inputs`); the
    terminal event's type."""
    request = ex.ExecuteWorkflowRequest(
        workflow=workflow,
        spec=None if spec is None else struct(spec),
        inputs=struct(inputs if inputs is not None else {"question": question}),
    )
    events = [event async for event in client.executions.ExecuteWorkflow(request, metadata=md)]
    return str(events[-1].type)


async def start_slow(client: Client, md: Metadata, workflow: str) -> str:
    """A background run whose provider call takes 30 s; its name once it runs."""
    started = await client.executions.StartExecution(
        ex.StartExecutionRequest(workflow=workflow, inputs=struct({"question": f"{SLOW} wait"})),
        metadata=md,
    )

    async def running() -> bool:
        execution = await client.executions.GetExecution(
            ex.GetExecutionRequest(name=started.name), metadata=md
        )
        return execution.state == ex.Execution.State.STATE_RUNNING

    await eventually(running, timeout=10)
    return str(started.name)


async def cancel(client: Client, md: Metadata, name: str) -> None:
    await client.executions.CancelExecution(
        ex.CancelExecutionRequest(name=name, reason="stats test"), metadata=md
    )

    async def ended() -> bool:
        execution = await client.executions.GetExecution(
            ex.GetExecutionRequest(name=name), metadata=md
        )
        return execution.state in FINAL_STATES

    await eventually(ended, timeout=10)


async def get_stats(
    client: Client, md: Metadata, *, window: timedelta | None = None, bucket_count: int = 0
) -> observability_pb2.Stats:
    request = observability_pb2.GetStatsRequest(bucket_count=bucket_count)
    if window is not None:
        request.window.FromTimedelta(window)
    stats: observability_pb2.Stats = await observability(client).GetStats(request, metadata=md)
    return stats


# --- what is expected, from the stored rows ---


async def stored_runs(owner: asyncpg.Connection, tenant: str) -> list[dict[str, Any]]:
    """The tenant's executions as stored (read as the owner: no row-level security), their
    JSON columns parsed."""
    rows = await owner.fetch(
        """
        SELECT e.id, e.workflow_id, e.status, e.created_at, e.duration_ms, e.error,
               e.prompt_tokens, e.completion_tokens, e.model_usage
        FROM executions e JOIN tenants t ON t.id = e.tenant_id
        WHERE t.name = $1
        ORDER BY e.created_at
        """,
        tenant,
    )
    parsed = []
    for row in rows:
        run = dict(row)
        for column in ("error", "model_usage"):
            run[column] = None if run[column] is None else json.loads(run[column])
        parsed.append(run)
    return parsed


def state_of(status: str) -> str:
    return next(state for state, statuses in STATES.items() if status in statuses)


def expected_buckets(
    rows: list[dict[str, Any]], start: datetime, width: timedelta, count: int
) -> list[dict[str, int]]:
    """Per bucket of [start + i*width, start + (i+1)*width), the runs by state."""
    buckets = [dict.fromkeys(STATES, 0) for _ in range(count)]
    for row in rows:
        index = (row["created_at"] - start) // width
        if 0 <= index < count:
            buckets[index][state_of(row["status"])] += 1
    return buckets


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation at (n - 1) * fraction."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def proto_buckets(stats: observability_pb2.Stats) -> list[dict[str, int]]:
    return [
        {"completed": b.completed, "failed": b.failed, "cancelled": b.cancelled, "active": b.active}
        for b in stats.buckets
    ]


def as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)  # type: ignore[no-any-return]


def execution_id(name: str) -> uuid.UUID:
    return uuid.UUID(name.removeprefix("executions/"))
