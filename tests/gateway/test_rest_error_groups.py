"""Error groups over REST through a real Envoy: `GET /v1/errorGroups` and
`GET /v1/errorGroups/{fingerprint}` after a background run failed at the fake provider; filters,
bad names, another tenant."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
from support.gateway_fixtures import RunningGateway
from support.rest import (
    api_error,
    create_workflow,
    field_violations,
    final_execution,
    start_execution,
)
from support.runs import answer_spec

from agentflow_grpc.testing import FakeProviderServer

RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


async def test_a_failed_run_shows_as_an_error_group_over_rest(
    gateway: RunningGateway, runner: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="refuse", status=400, message="no, thanks")
    workflow = await create_workflow(
        runner, answer_spec("refuser", prompt="refuse {{ inputs.question }}")
    )
    started = await start_execution(runner, workflow=workflow["name"])
    execution = await final_execution(runner, started["name"])
    assert execution["state"] == "STATE_FAILED"

    response = await runner.get("/v1/errorGroups", params={"page_size": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_page_token"] == ""
    [group] = body["error_groups"]
    assert re.fullmatch("errorGroups/[0-9a-f]{32}", group["name"])
    assert (group["code"], group["node_type"], group["kind"]) == (
        "provider.rejected",
        "llm",
        "node_attempt",
    )
    assert (group["count"], group["failed_execution_count"]) == ("1", "1")  # int64: strings
    assert (group["workflows"], group["workflow_count"]) == ([workflow["name"]], "1")
    assert group["sample_message"] == execution["error"]["message"]
    assert re.fullmatch(RFC3339, group["first_seen_time"])
    assert datetime.fromisoformat(group["last_seen_time"]) >= datetime.fromisoformat(
        group["first_seen_time"]
    )
    assert group["occurrences"] == []

    one = await runner.get(f"/v1/{group['name']}")
    assert one.status_code == 200, one.text
    [occurrence] = one.json()["occurrences"]
    assert occurrence["execution"] == started["name"]
    assert occurrence["workflow"] == workflow["name"]
    assert (occurrence["node_id"], occurrence["attempt"], occurrence["kind"]) == (
        "reply",
        1,
        "node_attempt",
    )
    assert occurrence["ended_execution"] is True
    assert occurrence["time"] == group["last_seen_time"]

    filtered = await runner.get("/v1/errorGroups", params={"code": "provider.rate_limited"})
    assert filtered.json()["error_groups"] == []
    recent = await runner.get(
        "/v1/errorGroups", params={"last_seen_after": group["last_seen_time"]}
    )
    assert [found["name"] for found in recent.json()["error_groups"]] == [group["name"]]

    # Another tenant: none listed, and this one is not found.
    other = {"x-api-key": gateway.api.other_tenant_key}
    listed = await runner.get("/v1/errorGroups", headers=other)
    assert listed.json()["error_groups"] == []
    api_error(await runner.get(f"/v1/{group['name']}", headers=other), 404, 5, "not_found")


async def test_bad_names_and_unknown_groups_over_rest(runner: httpx.AsyncClient) -> None:
    bad = api_error(
        await runner.get("/v1/errorGroups/not-a-fingerprint"), 400, 3, "invalid_argument"
    )
    assert field_violations(bad) == [("name", "invalid_argument")]
    api_error(await runner.get("/v1/errorGroups/" + "0" * 32), 404, 5, "not_found")
    size = api_error(
        await runner.get("/v1/errorGroups", params={"page_size": -1}), 400, 3, "invalid_argument"
    )
    assert field_violations(size) == [("page_size", "invalid_argument")]
