"""Recorded runs: the runtime's events go through the event log, and read back as they streamed.

Real parts only: the embedded PostgreSQL (migrated), the fake OpenAI-compatible provider over
HTTP through the openai SDK, and sources stored with sealed secrets.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as redis
from support.provider import SLOW
from support.runs import answer_spec, assert_well_formed, collect

from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits import Limiter, LimitPolicy
from agentflow_grpc.model.errors import (
    InvalidArgumentError,
    InvalidInputsError,
    InvalidSpecError,
    NotFoundError,
)
from agentflow_grpc.model.events import EventType
from agentflow_grpc.model.records import Execution, ExecutionStatus, Principal, Role, Tenant
from agentflow_grpc.nodes.registry import NodeRegistry
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.queue.coordination import Coordination
from agentflow_grpc.services.executions import ExecutionService, RunRequest
from agentflow_grpc.services.sources import SourceService
from agentflow_grpc.services.workflows import WorkflowService
from agentflow_grpc.sources.registry import SourceRegistry
from agentflow_grpc.spec import Limits, PluginCatalog
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.testing import FakeProviderServer


@dataclass
class Services:
    workflows: WorkflowService
    sources: SourceService
    executions: ExecutionService
    editor: Principal


@pytest.fixture
async def services(
    database: Database,
    keyring: Keyring,
    tenant_a: Tenant,
    provider: FakeProviderServer,
    valkey: redis.Redis,
) -> AsyncIterator[Services]:
    metrics = Metrics()
    registry = SourceRegistry.default(metrics=metrics)
    limits, plugins = Limits(), PluginCatalog()
    engine = ExecutionEngine(
        metrics=metrics, registry=NodeRegistry(), node_timeout=30, execution_timeout=60
    )
    # The server's Redis parts, on the session's Valkey under a prefix of this test's own.
    keys = RedisKeys(f"test-{uuid.uuid4().hex[:12]}")
    versions = WorkflowVersionCache(valkey, keys=keys, metrics=metrics)
    found = Services(
        workflows=WorkflowService(database, plugins=plugins, limits=limits, versions=versions),
        sources=SourceService(database, keyring, registry),
        executions=ExecutionService(
            database,
            engine,
            keyring,
            sources=registry,
            plugins=plugins,
            limits=limits,
            coordination=Coordination.on(
                valkey, keys, replica="test", visibility_timeout=30, max_deliveries=3
            ),
            limiter=Limiter(valkey, LimitPolicy(), keys=keys, metrics=metrics),
            versions=versions,
            metrics=metrics,
        ),
        editor=Principal(tenant_id=tenant_a.id, role=Role.EDITOR, api_key_id=uuid.uuid4()),
    )
    await found.sources.create(
        found.editor,
        name="openai-main",
        type="openai",
        config={"base_url": f"{provider.url}/v1", "model": "fake-model"},
        secrets={"api_key": "sk-stored"},
    )
    yield found
    await found.executions.shutdown(grace=0)  # closes the tenant's opened sources


async def test_a_stored_workflow_runs_and_reads_back_as_it_streamed(
    services: Services, provider: FakeProviderServer
) -> None:
    workflow = await services.workflows.create(services.editor, answer_spec())
    run = await services.executions.start(
        services.editor, RunRequest(workflow_id=workflow.id, inputs={"question": "why?"})
    )
    streamed = await collect(run.events())
    assert_well_formed(streamed)
    assert streamed[-1].type is EventType.EXECUTION_COMPLETED

    stored = await services.executions.events(services.editor, run.id)
    assert [event.to_dict() for event in stored] == [event.to_dict() for event in streamed]

    detail = await services.executions.get(services.editor, run.id)
    execution = detail.execution
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.outputs == {"answer": "Echo: Answer: why?"}
    assert (execution.workflow_id, execution.workflow_version) == (workflow.id, 1)
    assert execution.spec_hash == workflow.spec_hash
    assert execution.inputs == {"question": "why?"}
    assert execution.usage.total_tokens > 0
    assert execution.last_sequence == len(streamed)
    assert execution.started_at is not None
    assert execution.finished_at is not None
    assert execution.created_by == services.editor.actor
    # The source's secret was opened for the run: the provider saw the stored key.
    assert provider.requests[-1].headers["authorization"] == "Bearer sk-stored"

    (start, reply) = detail.trace
    assert (start.node_id, start.node_type, start.status) == ("start", "input", "completed")
    assert (reply.node_id, reply.node_type, reply.status) == ("reply", "llm", "completed")
    (attempt,) = reply.attempts
    assert attempt.output["text"] == "Echo: Answer: why?"
    assert attempt.streamed_text == "Echo: Answer: why?"
    assert attempt.usage is not None
    assert attempt.usage.total_tokens > 0
    assert attempt.duration_ms is not None
    assert attempt.duration_ms > 0


async def test_an_inline_spec_run_is_recorded_with_its_spec(services: Services) -> None:
    run = await services.executions.start(
        services.editor, RunRequest(spec=answer_spec("inline"), inputs={"question": "q"})
    )
    events = await collect(run.events())
    detail = await services.executions.get(services.editor, run.id)
    assert detail.execution.workflow_id is None
    assert detail.execution.status is ExecutionStatus.COMPLETED
    assert detail.execution.last_sequence == len(events)
    assert run.record.spec_hash == run.spec.content_hash


async def test_a_pinned_version_runs_that_version(services: Services) -> None:
    first = await services.workflows.create(
        services.editor, answer_spec(prompt="one {{ inputs.question }}")
    )
    await services.workflows.update(
        services.editor, first.id, answer_spec(prompt="two {{ inputs.question }}"), etag=first.etag
    )
    pinned = await services.executions.start(
        services.editor, RunRequest(workflow_id=first.id, version=1, inputs={"question": "x"})
    )
    current = await services.executions.start(
        services.editor, RunRequest(workflow_id=first.id, inputs={"question": "x"})
    )
    assert (await collect(pinned.events()))[-1].data["outputs"] == {"answer": "Echo: one x"}
    assert (await collect(current.events()))[-1].data["outputs"] == {"answer": "Echo: two x"}
    assert (pinned.record.workflow_version, current.record.workflow_version) == (1, 2)
    with pytest.raises(NotFoundError):
        await services.executions.start(
            services.editor, RunRequest(workflow_id=first.id, version=3, inputs={"question": "x"})
        )


async def test_refused_runs_leave_no_record(services: Services) -> None:
    with pytest.raises(InvalidInputsError):
        await services.executions.start(services.editor, RunRequest(spec=answer_spec(), inputs={}))
    with pytest.raises(InvalidSpecError) as invalid:
        await services.executions.start(
            services.editor,
            RunRequest(spec={**answer_spec(), "edges": []}, inputs={"question": "q"}),
        )
    assert invalid.value.violations
    unknown_source = answer_spec()
    unknown_source["nodes"][1]["source"] = "nowhere"
    with pytest.raises(InvalidSpecError) as invalid:
        await services.executions.start(
            services.editor, RunRequest(spec=unknown_source, inputs={"question": "q"})
        )
    assert [v.code.value for v in invalid.value.violations] == ["source.unknown"]
    with pytest.raises(InvalidArgumentError):
        await services.executions.start(services.editor, RunRequest(inputs={"question": "q"}))
    with pytest.raises(NotFoundError):
        await services.executions.start(
            services.editor, RunRequest(workflow_id=uuid.uuid4(), inputs={"question": "q"})
        )
    assert (await services.executions.list(services.editor)).items == []


async def test_a_failed_run_is_recorded_with_its_error(
    services: Services, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="refuse", status=400, message="bad request from the provider")
    run = await services.executions.start(
        services.editor,
        RunRequest(
            spec=answer_spec(prompt="refuse {{ inputs.question }}"), inputs={"question": "q"}
        ),
    )
    events = await collect(run.events())
    assert events[-1].type is EventType.EXECUTION_FAILED
    detail = await services.executions.get(services.editor, run.id)
    assert detail.execution.status is ExecutionStatus.FAILED
    assert detail.execution.error is not None
    assert detail.execution.error["node_id"] == "reply"
    assert detail.execution.error["code"].startswith("provider.")
    (attempt,) = detail.trace[1].attempts
    assert attempt.status == "failed"
    assert attempt.error is not None
    assert attempt.error["code"] == detail.execution.error["code"]


async def test_a_caller_that_stops_reading_leaves_the_run_cancelled_and_recorded(
    services: Services, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    run = await services.executions.start(
        services.editor,
        RunRequest(
            spec=answer_spec(prompt=SLOW + " {{ inputs.question }}"), inputs={"question": "q"}
        ),
    )
    before = asyncio.all_tasks()
    stream = run.events()
    async for event in stream:
        if event.type is EventType.NODE_STARTED and event.node_id == "reply":
            break
    await stream.aclose()
    detail = await services.executions.get(services.editor, run.id)
    assert detail.execution.status is ExecutionStatus.CANCELLED
    assert detail.execution.error is not None
    assert detail.execution.error["code"] == "cancelled"
    stored = await services.executions.events(services.editor, run.id)
    assert stored[-1].type is EventType.EXECUTION_CANCELLED
    assert stored[-1].data["interrupted_nodes"] == ["reply"]
    assert detail.trace[1].status == "interrupted"
    assert asyncio.all_tasks() <= before  # the run and its recorder are gone


async def test_events_after_a_sequence(services: Services) -> None:
    run = await services.executions.start(
        services.editor, RunRequest(spec=answer_spec(), inputs={"question": "q"})
    )
    streamed = await collect(run.events())
    later = await services.executions.events(services.editor, run.id, after_sequence=2)
    assert [event.sequence for event in later] == list(range(3, len(streamed) + 1))
    with pytest.raises(InvalidArgumentError):
        await services.executions.events(services.editor, run.id, after_sequence=-1)


async def test_a_run_is_recorded_as_its_starters_and_any_role_of_the_tenant_reads_it(
    services: Services,
) -> None:
    # Who may call what is the API's roles table (api/access.py, tests/api/test_access_table.py).
    tenant_id = services.editor.tenant_id
    viewer = Principal(tenant_id=tenant_id, role=Role.VIEWER, api_key_id=uuid.uuid4())
    runner = Principal(tenant_id=tenant_id, role=Role.RUNNER, api_key_id=uuid.uuid4())
    run = await services.executions.start(
        runner, RunRequest(spec=answer_spec(), inputs={"question": "q"})
    )
    await collect(run.events())
    assert (await services.executions.get(viewer, run.id)).execution.created_by == runner.actor


async def test_listing_filters_by_status_workflow_and_time(services: Services) -> None:
    workflow = await services.workflows.create(services.editor, answer_spec())
    runs = []
    for _ in range(3):
        run = await services.executions.start(
            services.editor, RunRequest(workflow_id=workflow.id, inputs={"question": "q"})
        )
        await collect(run.events())
        runs.append(run.id)
    inline = await services.executions.start(
        services.editor, RunRequest(spec=answer_spec(), inputs={"question": "q"})
    )
    await collect(inline.events())

    by_workflow = await services.executions.list(services.editor, workflow_id=workflow.id)
    assert {execution.id for execution in by_workflow.items} == set(runs)
    completed = await services.executions.list(
        services.editor, statuses=[ExecutionStatus.COMPLETED]
    )
    assert len(completed.items) == 4
    failed = await services.executions.list(services.editor, statuses=[ExecutionStatus.FAILED])
    assert failed.items == []
    future = datetime.now(UTC) + timedelta(hours=1)
    assert (await services.executions.list(services.editor, created_after=future)).items == []
    assert len((await services.executions.list(services.editor, created_before=future)).items) == 4

    seen: list[Execution] = []
    token = ""
    while True:
        page = await services.executions.list(services.editor, page_size=3, page_token=token)
        seen += page.items
        if not (token := page.next_page_token):
            break
    assert {execution.id for execution in seen} == {*runs, inline.id}  # each once, none lost
    assert len(seen) == 4
    keys = [(execution.created_at, execution.id) for execution in seen]
    assert keys == sorted(keys, reverse=True)  # newest first
