"""WorkflowService over gRPC: a real server, the generated stubs, the session's PostgreSQL."""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from support.api_helpers import (
    INVALID_SPEC_VIOLATIONS,
    Client,
    assert_invalid,
    create_workflow,
    field_violations,
    invalid_spec,
    non_finite,
    plain,
    refused_cleanly,
    router_spec,
    rpc_error,
    struct,
)

from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def list_all(client: Client, md: Any, **request: Any) -> list[wf.Workflow]:
    response = await client.workflows.ListWorkflows(wf.ListWorkflowsRequest(**request), metadata=md)
    assert not response.next_page_token
    return list(response.workflows)


async def test_create_then_get_returns_the_stored_workflow(client: Client, md: Any) -> None:
    created = await create_workflow(client, md)
    assert re.fullmatch(f"workflows/{UUID}", created.name), created.name
    assert created.version == 1
    assert created.etag
    assert created.spec_name == "router-demo"
    assert created.creator.startswith("api_key:")
    assert re.fullmatch("[0-9a-f]{64}", created.spec_hash)
    assert created.HasField("create_time")
    assert not created.HasField("delete_time")

    got = await client.workflows.GetWorkflow(wf.GetWorkflowRequest(name=created.name), metadata=md)
    assert got == created


async def test_whole_numbers_round_trip_as_numbers_the_strict_validator_accepts(
    client: Client, md: Any
) -> None:
    # A Struct holds 3 as 3.0; the strict spec models refuse 3.0 for an int field, so this
    # create succeeding means the server read it back as 3.
    created = await create_workflow(client, md)
    router = plain(created.spec)["nodes"][1]
    assert router["config"]["max_iterations"] == 3
    assert plain(created.spec)["inputs"]["n"]["default"] == 1
    # What came out goes back in: validating and storing it again works.
    checked = await client.workflows.ValidateWorkflow(
        wf.ValidateWorkflowRequest(spec=created.spec), metadata=md
    )
    assert checked.valid, checked.violations
    again = await client.workflows.UpdateWorkflow(
        wf.UpdateWorkflowRequest(
            workflow=wf.Workflow(name=created.name, spec=created.spec, etag=created.etag)
        ),
        metadata=md,
    )
    assert again.spec_hash == created.spec_hash


async def test_list_pages_newest_first_and_filters_by_spec_name(client: Client, md: Any) -> None:
    names = [
        (await create_workflow(client, md, router_spec("alpha" if i < 5 else "beta"))).name
        for i in range(6)
    ]
    seen: list[str] = []
    pages = 0
    token = ""
    while True:
        page = await client.workflows.ListWorkflows(
            wf.ListWorkflowsRequest(page_size=2, page_token=token), metadata=md
        )
        pages += 1
        assert len(page.workflows) == 2
        seen += [workflow.name for workflow in page.workflows]
        if not (token := page.next_page_token):
            break
    assert pages == 3
    assert seen == names[::-1]

    assert [w.name for w in await list_all(client, md, spec_name="beta")] == [names[5]]
    assert [w.name for w in await list_all(client, md, spec_name="alpha")] == names[4::-1]
    assert await list_all(client, md, spec_name="gamma") == []


async def test_update_stores_the_next_version_guarded_by_the_etag(client: Client, md: Any) -> None:
    created = await create_workflow(client, md)
    changed = router_spec()
    changed["title"] = "Second version"
    updated = await client.workflows.UpdateWorkflow(
        wf.UpdateWorkflowRequest(
            workflow=wf.Workflow(name=created.name, spec=struct(changed), etag=created.etag),
            update_mask=field_mask_pb2.FieldMask(paths=["spec"]),
        ),
        metadata=md,
    )
    assert updated.name == created.name
    assert updated.version == 2
    assert updated.etag != created.etag
    assert updated.spec_hash != created.spec_hash
    assert plain(updated.spec)["title"] == "Second version"
    assert updated.updater.startswith("api_key:")

    # The etag of version 1 is stale now.
    stale = await rpc_error(
        client.workflows.UpdateWorkflow(
            wf.UpdateWorkflowRequest(
                workflow=wf.Workflow(name=created.name, spec=created.spec, etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["spec"]),
            ),
            metadata=md,
        )
    )
    assert stale.code() is grpc.StatusCode.ABORTED

    unknown_field = await rpc_error(
        client.workflows.UpdateWorkflow(
            wf.UpdateWorkflowRequest(
                workflow=wf.Workflow(name=created.name, spec=created.spec),
                update_mask=field_mask_pb2.FieldMask(paths=["spec", "spec_name"]),
            ),
            metadata=md,
        )
    )
    assert_invalid(unknown_field, "update_mask")

    versions = await client.workflows.ListWorkflowVersions(
        wf.ListWorkflowVersionsRequest(parent=created.name), metadata=md
    )
    assert [v.version for v in versions.versions] == [2, 1]
    assert [v.name for v in versions.versions] == [
        f"{created.name}/versions/2",
        f"{created.name}/versions/1",
    ]
    assert [v.spec_hash for v in versions.versions] == [updated.spec_hash, created.spec_hash]
    assert plain(versions.versions[1].spec) == plain(created.spec)

    got = await client.workflows.GetWorkflow(wf.GetWorkflowRequest(name=created.name), metadata=md)
    assert (got.version, got.etag) == (2, updated.etag)


async def test_an_invalid_spec_on_update_names_its_violations(client: Client, md: Any) -> None:
    created = await create_workflow(client, md)
    error = await rpc_error(
        client.workflows.UpdateWorkflow(
            wf.UpdateWorkflowRequest(
                workflow=wf.Workflow(name=created.name, spec=struct(invalid_spec()))
            ),
            metadata=md,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == [
        (f"workflow.spec{path}", code) for path, code in INVALID_SPEC_VIOLATIONS
    ]


async def test_delete_is_soft(client: Client, md: Any) -> None:
    kept = await create_workflow(client, md)
    first = await create_workflow(client, md)
    changed = router_spec()
    changed["title"] = "v2"
    gone = await client.workflows.UpdateWorkflow(
        wf.UpdateWorkflowRequest(workflow=wf.Workflow(name=first.name, spec=struct(changed))),
        metadata=md,
    )
    stale = await rpc_error(
        client.workflows.DeleteWorkflow(
            wf.DeleteWorkflowRequest(name=gone.name, etag=first.etag), metadata=md
        )
    )
    assert stale.code() is grpc.StatusCode.ABORTED

    deleted = await client.workflows.DeleteWorkflow(
        wf.DeleteWorkflowRequest(name=gone.name, etag=gone.etag), metadata=md
    )
    assert deleted.name == gone.name
    assert deleted.HasField("delete_time")

    missing = await rpc_error(
        client.workflows.GetWorkflow(wf.GetWorkflowRequest(name=gone.name), metadata=md)
    )
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    assert [w.name for w in await list_all(client, md)] == [kept.name]
    shown = await list_all(client, md, show_deleted=True)
    assert [w.name for w in shown] == [gone.name, kept.name]
    assert shown[0].HasField("delete_time")
    assert not shown[1].HasField("delete_time")


async def test_validate_reports_every_violation_and_stores_nothing(client: Client, md: Any) -> None:
    good = await client.workflows.ValidateWorkflow(
        wf.ValidateWorkflowRequest(spec=struct(router_spec())), metadata=md
    )
    assert good.valid
    assert list(good.violations) == []
    assert (good.node_count, good.edge_count) == (4, 3)

    bad = await client.workflows.ValidateWorkflow(
        wf.ValidateWorkflowRequest(spec=struct(invalid_spec())), metadata=md
    )
    assert not bad.valid
    assert [(v.path, v.code) for v in bad.violations] == INVALID_SPEC_VIOLATIONS
    assert all(v.message for v in bad.violations)
    assert await list_all(client, md) == []


async def test_validate_reports_warnings_beside_a_valid_verdict(client: Client, md: Any) -> None:
    def call(node_id: str) -> dict[str, Any]:
        return {"id": node_id, "type": "http", "config": {"url": f"https://example.com/{node_id}"}}

    spec = {
        "api_version": "agentflow/v1",
        "name": "parallel-join",
        "outputs": {"out": {"from": "nodes.after.output"}},
        "nodes": [{"id": "start", "type": "input"}, call("a"), call("b"), call("after")],
        "edges": [
            {"from": "start", "to": "a"},
            {"from": "start", "to": "b"},
            {"from": "a", "to": "after"},
            {"from": "b", "to": "after"},
        ],
    }
    checked = await client.workflows.ValidateWorkflow(
        wf.ValidateWorkflowRequest(spec=struct(spec)), metadata=md
    )
    assert checked.valid
    assert list(checked.violations) == []
    assert [(w.path, w.code) for w in checked.warnings] == [("/nodes/3", "graph.parallel_join")]
    assert "aggregator" in checked.warnings[0].message


async def test_a_bad_spec_on_create_is_invalid_argument_with_field_violations(
    client: Client, md: Any
) -> None:
    error = await rpc_error(create_workflow(client, md, invalid_spec()))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(error) == [
        (f"workflow.spec{path}", code) for path, code in INVALID_SPEC_VIOLATIONS
    ]
    assert await list_all(client, md, show_deleted=True) == []


async def test_an_unknown_id_is_not_found(client: Client, md: Any) -> None:
    name = f"workflows/{uuid.uuid4()}"
    calls = [
        client.workflows.GetWorkflow(wf.GetWorkflowRequest(name=name), metadata=md),
        client.workflows.DeleteWorkflow(wf.DeleteWorkflowRequest(name=name), metadata=md),
        client.workflows.ListWorkflowVersions(
            wf.ListWorkflowVersionsRequest(parent=name), metadata=md
        ),
        client.workflows.UpdateWorkflow(
            wf.UpdateWorkflowRequest(workflow=wf.Workflow(name=name, spec=struct(router_spec()))),
            metadata=md,
        ),
    ]
    for call in calls:
        assert (await rpc_error(call)).code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "name", ["workflows/not-a-uuid", f"sources/{uuid.uuid4()}", "", "workflows/", "workflows"]
)
async def test_a_malformed_name_is_invalid_argument_naming_the_field(
    client: Client, md: Any, name: str
) -> None:
    assert_invalid(
        await rpc_error(
            client.workflows.GetWorkflow(wf.GetWorkflowRequest(name=name), metadata=md)
        ),
        "name",
    )
    assert_invalid(
        await rpc_error(
            client.workflows.DeleteWorkflow(wf.DeleteWorkflowRequest(name=name), metadata=md)
        ),
        "name",
    )
    assert_invalid(
        await rpc_error(
            client.workflows.ListWorkflowVersions(
                wf.ListWorkflowVersionsRequest(parent=name), metadata=md
            )
        ),
        "parent",
    )
    assert_invalid(
        await rpc_error(
            client.workflows.UpdateWorkflow(
                wf.UpdateWorkflowRequest(
                    workflow=wf.Workflow(name=name, spec=struct(router_spec()))
                ),
                metadata=md,
            )
        ),
        "workflow.name",
    )


async def test_a_repeated_request_id_returns_the_first_workflow(client: Client, md: Any) -> None:
    first = await create_workflow(client, md, request_id="create-1")
    again = await create_workflow(client, md, router_spec("other-name"), request_id="create-1")
    assert again.name == first.name
    assert again.spec_name == "router-demo"
    assert [w.name for w in await list_all(client, md, show_deleted=True)] == [first.name]
    other = await create_workflow(client, md, request_id="create-2")
    assert other.name != first.name


@pytest.mark.parametrize("request_id", ["has spaces", "x" * 200, "naïve", "a/b"])
async def test_an_invalid_request_id_is_invalid_argument(
    client: Client, md: Any, request_id: str
) -> None:
    error = await rpc_error(create_workflow(client, md, request_id=request_id))
    assert_invalid(error, "request_id")
    assert await list_all(client, md, show_deleted=True) == []


# PostgreSQL cannot store U+0000 in text or jsonb, and JSON has no NaN or infinities: such
# requests are the client's mistake (INVALID_ARGUMENT), not the server's (INTERNAL).


async def test_a_nul_character_in_a_spec_is_invalid_argument(client: Client, md: Any) -> None:
    spec = router_spec()
    spec["title"] = "a\x00b"
    await refused_cleanly(create_workflow(client, md, spec))
    created = await create_workflow(client, md)
    await refused_cleanly(
        client.workflows.UpdateWorkflow(
            wf.UpdateWorkflowRequest(workflow=wf.Workflow(name=created.name, spec=struct(spec))),
            metadata=md,
        )
    )
    assert [w.name for w in await list_all(client, md)] == [created.name]


async def test_a_nul_character_in_the_spec_name_filter_is_invalid_argument(
    client: Client, md: Any
) -> None:
    await refused_cleanly(
        client.workflows.ListWorkflows(wf.ListWorkflowsRequest(spec_name="a\x00b"), metadata=md)
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_a_non_finite_number_in_a_spec_is_invalid_argument(
    client: Client, md: Any, value: float
) -> None:
    spec = non_finite(router_spec(), "title", value)
    await refused_cleanly(
        client.workflows.ValidateWorkflow(wf.ValidateWorkflowRequest(spec=spec), metadata=md)
    )
    await refused_cleanly(
        client.workflows.CreateWorkflow(
            wf.CreateWorkflowRequest(workflow=wf.Workflow(spec=spec)), metadata=md
        )
    )
    assert await list_all(client, md) == []
