"""The run path's cache of workflow versions (Redis): filled by a run, emptied by an update or a
delete, so a run always runs the current version; and another tenant never reads it."""

from __future__ import annotations

import grpc
import redis.asyncio as redis
from support.api_fixtures import RunningApi
from support.api_helpers import Client, create_workflow, echo_spec, rpc_error, struct

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf


async def _run(client: Client, api: RunningApi, workflow: str) -> ex.Execution:
    events = [
        event
        async for event in client.executions.ExecuteWorkflow(
            ex.ExecuteWorkflowRequest(workflow=workflow), metadata=api.metadata()
        )
    ]
    assert events[-1].type == "execution_completed"
    return await client.executions.GetExecution(  # type: ignore[no-any-return]
        ex.GetExecutionRequest(name=events[0].execution), metadata=api.metadata()
    )


async def test_runs_fill_the_cache_and_updates_and_deletes_empty_it(
    client: Client, api: RunningApi, valkey: redis.Redis
) -> None:
    created = await create_workflow(client, api.metadata(), echo_spec())
    tenant = await api.server.app.tenants.find_tenant("acme")
    prefix = api.server.app.settings.redis_prefix
    workflow_id = created.name.removeprefix("workflows/")
    current = f"{prefix}:wf:{tenant.id}:{workflow_id}:current"

    first = await _run(client, api, created.name)
    assert first.workflow_version == 1
    assert await valkey.get(current) == b"1"
    assert await valkey.exists(f"{prefix}:wf:{tenant.id}:{workflow_id}:v1")
    again = await _run(client, api, created.name)  # from the cache, the same answer
    assert again.workflow_version == 1

    changed = echo_spec()
    changed["inputs"]["n"]["default"] = 2
    updated = await client.workflows.UpdateWorkflow(
        wf.UpdateWorkflowRequest(
            workflow=wf.Workflow(name=created.name, spec=struct(changed), etag=created.etag)
        ),
        metadata=api.metadata(),
    )
    assert updated.version == 2
    assert await valkey.get(current) is None  # emptied by the update
    second = await _run(client, api, created.name)
    assert second.workflow_version == 2
    assert second.outputs["n"] == 2
    assert await valkey.get(current) == b"2"

    await client.workflows.DeleteWorkflow(
        wf.DeleteWorkflowRequest(name=created.name, etag=updated.etag), metadata=api.metadata()
    )
    assert await valkey.get(current) is None
    error = await rpc_error(
        client.executions.StartExecution(
            ex.StartExecutionRequest(workflow=created.name), metadata=api.metadata()
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_another_tenant_does_not_reach_a_cached_workflow(
    client: Client, api: RunningApi
) -> None:
    created = await create_workflow(client, api.metadata(), echo_spec())
    await _run(client, api, created.name)  # cached now, for tenant acme
    other = (("x-api-key", api.other_tenant_key),)
    error = await rpc_error(
        client.executions.StartExecution(
            ex.StartExecutionRequest(workflow=created.name), metadata=other
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
