"""The REST/JSON API through a real Envoy (gRPC-JSON transcoder) in front of a real server:
CRUD, every error mapping (HTTP status, JSON body with the gRPC code and google.rpc details),
background executions, CORS, health, the browser page, native gRPC on the same port, request
ids. The SSE streams are in test_rest_streams.py."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import (
    INVALID_SPEC_VIOLATIONS,
    client_of,
    eventually,
    invalid_spec,
    router_spec,
    rpc_error,
    struct,
)
from support.api_helpers import error_info as grpc_error_info
from support.gateway_fixtures import APP_ORIGIN, RunningGateway, start_gateway
from support.provider import SLOW
from support.rest import (
    SOURCE_SECRET,
    UUID,
    api_error,
    create_openai_source,
    create_workflow,
    detail,
    envoy_error,
    field_violations,
    final_execution,
    start_execution,
)
from support.runs import answer_spec, slow_spec

from agentflow_grpc import __version__
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.gateway.envoy import CONTENT_SECURITY_POLICY
from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer


@pytest.fixture
async def rest(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's HTTP client on the gateway."""
    async with gateway.client() as client:
        yield client


def assert_json(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    return body


# --- workflows ---


async def test_create_then_get_a_workflow(rest: httpx.AsyncClient) -> None:
    created = assert_json(await rest.post("/v1/workflows", json={"spec": router_spec()}))
    assert re.fullmatch(f"workflows/{UUID}", created["name"]), created
    assert created["spec"] == router_spec()  # numbers come back as the integers they were
    assert created["spec_name"] == "router-demo"
    assert created["version"] == 1
    assert created["etag"]
    assert re.fullmatch("[0-9a-f]{64}", created["spec_hash"])
    assert created["creator"].startswith("api_key:")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", created["create_time"])
    assert "delete_time" not in created

    got = assert_json(await rest.get(f"/v1/{created['name']}"))
    assert got == created


async def test_list_pages_with_page_size_and_page_token(rest: httpx.AsyncClient) -> None:
    names = [(await create_workflow(rest, router_spec(f"flow-{i}")))["name"] for i in range(5)]
    seen: list[str] = []
    pages: list[int] = []
    token = ""
    while True:
        params: dict[str, str | int] = {"page_size": 2}
        if token:
            params["page_token"] = token
        page = assert_json(await rest.get("/v1/workflows", params=params))
        assert set(page) == {"workflows", "next_page_token"}  # printed even when empty
        pages.append(len(page["workflows"]))
        seen += [workflow["name"] for workflow in page["workflows"]]
        token = page["next_page_token"]
        if not token:
            break
        assert len(pages) < 10, "the pages never end"
    assert pages == [2, 2, 1]
    assert seen == names[::-1]  # newest first

    only = assert_json(await rest.get("/v1/workflows", params={"spec_name": "flow-3"}))
    assert [w["name"] for w in only["workflows"]] == [names[3]]
    none = assert_json(await rest.get("/v1/workflows", params={"spec_name": "nothing"}))
    assert none == {"workflows": [], "next_page_token": ""}


async def test_patch_with_a_field_mask_and_etag_stores_the_next_version(
    rest: httpx.AsyncClient,
) -> None:
    created = await create_workflow(rest, router_spec())
    changed = router_spec()
    changed["title"] = "Second version"
    updated = assert_json(
        await rest.patch(
            f"/v1/{created['name']}",
            params={"update_mask": "spec"},
            json={"spec": changed, "etag": created["etag"]},
        )
    )
    assert updated["name"] == created["name"]
    assert updated["version"] == 2
    assert updated["etag"]
    assert updated["etag"] != created["etag"]
    assert updated["spec"]["title"] == "Second version"
    assert updated["spec_hash"] != created["spec_hash"]
    assert updated["updater"].startswith("api_key:")

    versions = assert_json(await rest.get(f"/v1/{created['name']}/versions"))
    assert [v["version"] for v in versions["versions"]] == [2, 1]
    assert [v["name"] for v in versions["versions"]] == [
        f"{created['name']}/versions/2",
        f"{created['name']}/versions/1",
    ]
    assert [v["spec_hash"] for v in versions["versions"]] == [
        updated["spec_hash"],
        created["spec_hash"],
    ]
    assert versions["versions"][1]["spec"] == router_spec()
    assert versions["next_page_token"] == ""

    got = assert_json(await rest.get(f"/v1/{created['name']}"))
    assert (got["version"], got["etag"]) == (2, updated["etag"])


async def test_delete_hides_the_workflow_unless_show_deleted(rest: httpx.AsyncClient) -> None:
    kept = await create_workflow(rest, router_spec("kept"))
    gone = await create_workflow(rest, router_spec("gone"))
    deleted = assert_json(await rest.delete(f"/v1/{gone['name']}", params={"etag": gone["etag"]}))
    assert deleted["name"] == gone["name"]
    assert deleted["delete_time"]

    api_error(await rest.get(f"/v1/{gone['name']}"), 404, 5, "not_found")
    listed = assert_json(await rest.get("/v1/workflows"))
    assert [w["name"] for w in listed["workflows"]] == [kept["name"]]
    shown = assert_json(await rest.get("/v1/workflows", params={"show_deleted": "true"}))
    assert [w["name"] for w in shown["workflows"]] == [gone["name"], kept["name"]]
    assert shown["workflows"][0]["delete_time"] == deleted["delete_time"]
    assert "delete_time" not in shown["workflows"][1]


async def test_validate_reports_violations_with_their_paths(rest: httpx.AsyncClient) -> None:
    bad = assert_json(await rest.post("/v1/workflows:validate", json={"spec": invalid_spec()}))
    assert bad["valid"] is False
    assert [(v["path"], v["code"]) for v in bad["violations"]] == INVALID_SPEC_VIOLATIONS
    assert all(v["message"] for v in bad["violations"])

    good = assert_json(await rest.post("/v1/workflows:validate", json={"spec": router_spec()}))
    assert good == {
        "valid": True,
        "violations": [],
        "warnings": [],
        "node_count": 4,
        "edge_count": 3,
    }
    listed = assert_json(await rest.get("/v1/workflows", params={"show_deleted": "true"}))
    assert listed["workflows"] == []  # validating stores nothing


# --- sources ---


async def test_sources_crud_never_returns_a_secret(
    rest: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    created = await create_openai_source(rest, provider)
    assert re.fullmatch(f"sources/{UUID}", created["name"]), created
    assert (created["display_name"], created["type"]) == ("openai-main", "openai")
    assert created["config"] == {"base_url": f"{provider.url}/v1", "model": "fake-model"}
    assert created["secret_names"] == ["api_key"]
    assert created["secrets"] == {}  # write-only

    rotated = "sk-rotated-rest-5e0a77"
    responses = [
        await rest.get(f"/v1/{created['name']}"),
        await rest.get("/v1/sources"),
        await rest.patch(
            f"/v1/{created['name']}",
            params={"update_mask": "secrets,description"},
            json={"secrets": {"api_key": rotated}, "description": "rotated"},
        ),
        await rest.post(f"/v1/{created['name']}:test", json={}),
    ]
    for response in responses:
        assert_json(response)
        assert SOURCE_SECRET not in response.text
        assert rotated not in response.text
    got, listed, updated, tested = (response.json() for response in responses)
    assert got == created
    assert [source["name"] for source in listed["sources"]] == [created["name"]]
    assert (updated["description"], updated["secret_names"]) == ("rotated", ["api_key"])
    assert updated["etag"] != created["etag"]
    assert tested["ok"] is True, tested
    assert tested["latency_ms"] > 0

    deleted = await rest.delete(f"/v1/{created['name']}", params={"etag": updated["etag"]})
    assert assert_json(deleted)["delete_time"]
    assert rotated not in deleted.text
    api_error(await rest.get(f"/v1/{created['name']}"), 404, 5, "not_found")


# --- errors: every mapping, each a JSON body ---


async def test_an_invalid_spec_is_400_with_field_violations_as_json_paths(
    runner: httpx.AsyncClient,
) -> None:
    spec = answer_spec(prompt="Answer: {{ inputs.missing }}")
    response = await runner.post("/v1/workflows", json={"spec": spec})
    body = api_error(response, 400, 3, "invalid_spec")
    assert field_violations(body) == [
        ("workflow.spec/nodes/1/config/prompt", "template.unknown_input")
    ]
    assert detail(body, "BadRequest")["field_violations"][0]["description"]

    response = await runner.post("/v1/workflows", json={"spec": invalid_spec()})
    body = api_error(response, 400, 3, "invalid_spec")
    assert field_violations(body) == [
        (f"workflow.spec{path}", reason) for path, reason in INVALID_SPEC_VIOLATIONS
    ]
    listed = assert_json(await runner.get("/v1/workflows", params={"show_deleted": "true"}))
    assert listed["workflows"] == []


@pytest.mark.parametrize(
    ("method", "path", "content", "needle"),
    [
        ("POST", "/v1/workflows", b'{"spec": {"name": ', None),  # malformed JSON
        ("POST", "/v1/workflows", b'{"spec": "not an object"}', None),  # not a Struct
        ("GET", "/v1/workflows?colour=blue", None, "colour"),  # unknown query parameter
        ("GET", "/v1/workflows?page_size=many", None, None),  # not an int32
    ],
    ids=["malformed-json", "wrong-type", "unknown-query", "bad-number"],
)
async def test_a_request_the_transcoder_cannot_read_is_400_json(
    rest: httpx.AsyncClient, method: str, path: str, content: bytes | None, needle: str | None
) -> None:
    headers = {"content-type": "application/json"} if content is not None else {}
    response = await rest.request(method, path, content=content, headers=headers)
    body = envoy_error(response, 400, 3)
    if needle is not None:
        assert needle in body["message"], body


async def test_no_key_and_a_wrong_key_are_401(gateway: RunningGateway) -> None:
    async with gateway.client(None) as anonymous:
        missing = api_error(await anonymous.get("/v1/workflows"), 401, 16, "unauthenticated")
        assert "x-api-key" in missing["message"]
        wrong = await anonymous.get("/v1/workflows", headers={"x-api-key": "af_not-a-real-key"})
        api_error(wrong, 401, 16, "unauthenticated")
        bearer = await anonymous.get(
            "/v1/workflows", headers={"authorization": f"Bearer {gateway.api.keys[Role.VIEWER]}"}
        )
        assert assert_json(bearer) == {"workflows": [], "next_page_token": ""}


async def test_a_viewer_creating_a_workflow_is_403(gateway: RunningGateway) -> None:
    async with gateway.client(Role.VIEWER) as viewer:
        response = await viewer.post("/v1/workflows", json={"spec": router_spec()})
        body = api_error(response, 403, 7, "permission_denied")
        assert "editor" in body["message"]
        assert assert_json(await viewer.get("/v1/workflows"))["workflows"] == []


async def test_unknown_and_other_tenants_resources_are_404(
    gateway: RunningGateway, rest: httpx.AsyncClient
) -> None:
    mine = await create_workflow(rest, router_spec())
    for path in (
        f"/v1/workflows/{uuid.uuid4()}",
        f"/v1/workflows/{uuid.uuid4()}/versions",
        f"/v1/executions/{uuid.uuid4()}",
        f"/v1/sources/{uuid.uuid4()}",
    ):
        api_error(await rest.get(path), 404, 5, "not_found")
    mine_id, unknown_id = mine["name"].removeprefix("workflows/"), str(uuid.uuid4())
    unknown = api_error(await rest.get(f"/v1/workflows/{unknown_id}"), 404, 5, "not_found")
    async with gateway.client(None) as other:
        key = {"x-api-key": gateway.api.other_tenant_key}
        theirs = api_error(await other.get(f"/v1/{mine['name']}", headers=key), 404, 5, "not_found")
        # Word for word the answer for an id that does not exist: nothing tells them apart.
        assert theirs["message"] == unknown["message"].replace(unknown_id, mine_id)
        deleted = await other.delete(f"/v1/{mine['name']}", headers=key)
        api_error(deleted, 404, 5, "not_found")
    assert assert_json(await rest.get(f"/v1/{mine['name']}"))["version"] == 1


async def test_a_malformed_id_is_400_naming_the_field(rest: httpx.AsyncClient) -> None:
    body = api_error(await rest.get("/v1/workflows/not-a-uuid"), 400, 3, "invalid_argument")
    assert [field for field, _ in field_violations(body)] == ["name"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nothing"), ("GET", "/v2/workflows"), ("PUT", "/v1/workflows")],
)
async def test_an_unknown_path_or_method_is_404_json(
    rest: httpx.AsyncClient, method: str, path: str
) -> None:
    envoy_error(await rest.request(method, path), 404, 5)


async def test_a_stale_etag_is_409_aborted(rest: httpx.AsyncClient) -> None:
    created = await create_workflow(rest, router_spec())
    changed = router_spec()
    changed["title"] = "v2"
    updated = assert_json(
        await rest.patch(
            f"/v1/{created['name']}",
            params={"update_mask": "spec"},
            json={"spec": changed, "etag": created["etag"]},
        )
    )
    stale_patch = await rest.patch(
        f"/v1/{created['name']}",
        params={"update_mask": "spec"},
        json={"spec": router_spec(), "etag": created["etag"]},
    )
    api_error(stale_patch, 409, 10, "etag_mismatch")
    stale_delete = await rest.delete(f"/v1/{created['name']}", params={"etag": created["etag"]})
    api_error(stale_delete, 409, 10, "etag_mismatch")
    got = assert_json(await rest.get(f"/v1/{created['name']}"))
    assert (got["version"], got["etag"]) == (2, updated["etag"])  # neither call changed it
    assert "delete_time" not in got


async def test_a_source_name_taken_is_409_already_exists(
    rest: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    await create_openai_source(rest, provider, "taken")
    again = await rest.post(
        "/v1/sources",
        json={
            "display_name": "taken",
            "type": "openai",
            "config": {"base_url": f"{provider.url}/v1"},
            "secrets": {"api_key": "sk-another"},
        },
    )
    body = api_error(again, 409, 6, "already_exists")
    assert "taken" in body["message"]


async def test_a_body_over_max_request_bytes_is_413(api: RunningApi, tmp_path: Path) -> None:
    async with (
        start_gateway(api, tmp_path / "envoy", max_request_bytes=4096) as small,
        small.client() as client,
    ):
        spec = {**router_spec(), "description": "x" * 8192}
        response = await client.post("/v1/workflows:validate", json={"spec": spec})
        envoy_error(response, 413, 8)
        # Under the limit, the same gateway answers as ever.
        ok = await client.post("/v1/workflows:validate", json={"spec": router_spec()})
        assert assert_json(ok)["valid"] is True


async def test_too_many_running_executions_is_429_with_retry_info(
    migrated_dsn: str,
    redis_url: str,
    owner: object,
    provider: FakeProviderServer,
    tmp_path: Path,
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    settings = api_settings(migrated_dsn, redis_url, max_running_executions=1)
    async with (
        running_api(settings) as api,
        start_gateway(api, tmp_path / "envoy") as gateway,
        gateway.client() as client,
    ):
        await create_openai_source(client, provider)
        first = await start_execution(client, spec=slow_spec())

        async def first_running() -> dict[str, Any] | None:
            found = assert_json(await client.get(f"/v1/{first['name']}"))
            return found if found["state"] == "STATE_RUNNING" else None

        await eventually(first_running, timeout=10)  # a worker took it up: the one slot
        request = {"spec": answer_spec(), "inputs": {"question": "q"}}
        try:
            # A streamed run would be driven here at once: refused, before its first event.
            refused = await client.post("/v1/executions:execute", json=request)
            body = api_error(refused, 429, 8, "executions.too_many_running")
            assert detail(body, "RetryInfo")["retry_delay"] == "1s"
            # A background start is queued instead, and waits while the slot is taken.
            queued = await start_execution(client, **request)
            for _ in range(5):
                again = assert_json(await client.get(f"/v1/{queued['name']}"))
                assert again["state"] == "STATE_PENDING"
        finally:
            cancelled = await client.post(f"/v1/{first['name']}:cancel", json={})
        assert assert_json(cancelled)["state"] == "STATE_CANCELLED"

        # The slot is given back: the queued run is taken up and completes.
        assert (await final_execution(client, queued["name"]))["state"] == "STATE_COMPLETED"


async def test_a_client_grpc_timeout_is_504(
    runner: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    provider.add_rule(path="/v1/models", delay=3)  # TestSource lists the models: slowly
    sources = assert_json(await runner.get("/v1/sources"))["sources"]
    began = time.monotonic()
    response = await runner.post(
        f"/v1/{sources[0]['name']}:test", json={}, headers={"grpc-timeout": "200m"}
    )
    envoy_error(response, 504, 4)
    assert time.monotonic() - began < 2


async def test_a_call_longer_than_unary_timeout_is_504(
    api: RunningApi, provider: FakeProviderServer, tmp_path: Path
) -> None:
    provider.add_rule(path="/v1/models", delay=3)
    async with (
        start_gateway(api, tmp_path / "envoy", unary_timeout=0.3) as gateway,
        gateway.client() as client,
    ):
        source = await create_openai_source(client, provider)
        began = time.monotonic()
        response = await client.post(f"/v1/{source['name']}:test", json={})  # no grpc-timeout
        envoy_error(response, 504, 4)
        assert time.monotonic() - began < 2


# --- executions (background) ---


async def test_a_background_run_is_started_polled_and_listed(runner: httpx.AsyncClient) -> None:
    workflow = await create_workflow(runner, answer_spec())
    started = await start_execution(runner, workflow=workflow["name"])
    assert re.fullmatch(f"executions/{UUID}", started["name"]), started

    execution = await final_execution(runner, started["name"])
    assert execution["state"] == "STATE_COMPLETED", execution
    assert (execution["workflow"], execution["workflow_version"]) == (workflow["name"], 1)
    assert execution["spec_hash"] == workflow["spec_hash"]
    assert execution["inputs"] == {"question": "why?"}
    assert execution["outputs"] == {"answer": "Echo: Answer: why?"}
    assert re.fullmatch("[1-9][0-9]*", execution["last_sequence"])  # int64: a JSON string
    assert int(execution["usage"]["total_tokens"]) > 0
    assert [node["node_id"] for node in execution["trace"]] == ["start", "reply"]
    assert execution["trace"][1]["attempts"][0]["streamed_text"] == "Echo: Answer: why?"
    assert "error" not in execution

    completed = assert_json(
        await runner.get("/v1/executions", params={"states": "STATE_COMPLETED"})
    )
    assert [e["name"] for e in completed["executions"]] == [started["name"]]
    assert completed["executions"][0]["trace"] == []  # GetExecution only
    for state in ("STATE_RUNNING", "STATE_FAILED"):
        others = assert_json(await runner.get("/v1/executions", params={"states": state}))
        assert others["executions"] == []
    by_workflow = assert_json(
        await runner.get("/v1/executions", params={"workflow": workflow["name"]})
    )
    assert [e["name"] for e in by_workflow["executions"]] == [started["name"]]
    body = api_error(
        await runner.get("/v1/executions", params={"states": "STATE_UNSPECIFIED"}),
        400,
        3,
        "invalid_argument",
    )
    assert [field for field, _ in field_violations(body)] == ["states"]


async def test_cancel_stops_a_slow_background_run(
    runner: httpx.AsyncClient, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains=SLOW, delay=30)
    started = await start_execution(runner, spec=slow_spec())

    async def reply_started() -> bool:
        execution = assert_json(await runner.get(f"/v1/{started['name']}"))
        return any(node["node_id"] == "reply" for node in execution["trace"])

    await eventually(reply_started, timeout=5)
    began = time.monotonic()
    response = await runner.post(f"/v1/{started['name']}:cancel", json={"reason": "not needed"})
    cancelled = assert_json(response)
    assert time.monotonic() - began < 5
    assert cancelled["state"] == "STATE_CANCELLED"
    assert cancelled["error"]["code"] == "cancelled"
    got = assert_json(await runner.get(f"/v1/{started['name']}"))
    assert got["state"] == "STATE_CANCELLED"
    assert got["trace"][1]["status"] == "interrupted"
    listed = assert_json(await runner.get("/v1/executions", params={"states": "STATE_CANCELLED"}))
    assert [e["name"] for e in listed["executions"]] == [started["name"]]


async def test_a_runner_can_start_but_a_viewer_cannot(
    gateway: RunningGateway, runner: httpx.AsyncClient
) -> None:
    async with gateway.client(Role.VIEWER) as viewer:
        refused = await viewer.post(
            "/v1/executions", json={"spec": answer_spec(), "inputs": {"question": "q"}}
        )
        api_error(refused, 403, 7, "permission_denied")
    async with gateway.client(Role.RUNNER) as runner_key:
        started = await start_execution(runner_key, spec=answer_spec())
        assert (await final_execution(runner_key, started["name"]))["state"] == "STATE_COMPLETED"


# --- CORS ---


async def test_cors_allows_the_listed_origin_only(rest: httpx.AsyncClient) -> None:
    preflight = await rest.options(
        "/v1/workflows",
        headers={
            "origin": APP_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "x-api-key, content-type",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    allowed_headers = _listed(preflight.headers["access-control-allow-headers"])
    assert {"x-api-key", "content-type", "x-request-id"} <= allowed_headers
    assert {"GET", "POST", "PATCH", "DELETE"} <= {
        method.upper() for method in _listed(preflight.headers["access-control-allow-methods"])
    }

    real = await rest.get("/v1/workflows", headers={"origin": APP_ORIGIN})
    assert real.status_code == 200
    assert real.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = _listed(real.headers["access-control-expose-headers"])
    assert {"grpc-status", "grpc-message", "x-request-id"} <= exposed

    elsewhere = "http://elsewhere.example.test"
    denied = await rest.options(
        "/v1/workflows",
        headers={"origin": elsewhere, "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in denied.headers
    plain_get = await rest.get("/v1/workflows", headers={"origin": elsewhere})
    assert plain_get.status_code == 200
    assert "access-control-allow-origin" not in plain_get.headers


def _listed(header: str) -> set[str]:
    return {item.strip().lower() for item in header.split(",") if item.strip()}


# --- health ---


async def test_health_needs_no_key(gateway: RunningGateway) -> None:
    async with gateway.client(None) as anonymous:
        health = assert_json(await anonymous.get("/v1/health"))
    assert health["status"] == "SERVING"
    assert health["version"] == __version__
    dependencies = {d["name"]: d for d in health["dependencies"]}
    assert set(dependencies) == {"database", "redis"}
    for dependency in dependencies.values():
        assert dependency["status"] == "SERVING", dependency
        assert dependency["latency_ms"] > 0, dependency


# --- the browser page ---


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/app.js", "text/javascript"),
        ("/lib/api.js", "text/javascript"),
        ("/views/run.js", "text/javascript"),
        ("/app.css", "text/css"),
    ],
)
async def test_the_page_files_are_served_with_their_types_and_csp(
    gateway: RunningGateway, path: str, content_type: str
) -> None:
    async with gateway.client(None) as browser:
        response = await browser.get(path)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].split(";")[0] == content_type, response.headers
    assert len(response.headers.get_list("content-type")) == 1
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text.strip()
    assert not response.text.startswith('{"code"'), "the page came wrapped as a JSON error"
    if content_type == "text/html":
        assert "<html" in response.text.lower()


# --- native gRPC through Envoy's port ---


async def test_native_grpc_passes_through_the_gateway(
    gateway: RunningGateway, rest: httpx.AsyncClient
) -> None:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        client = client_of(channel)
        created = await client.workflows.CreateWorkflow(
            wf.CreateWorkflowRequest(workflow=wf.Workflow(spec=struct(router_spec()))),
            metadata=gateway.api.metadata(),
        )
        listed = await client.workflows.ListWorkflows(
            wf.ListWorkflowsRequest(), metadata=gateway.api.metadata(Role.VIEWER)
        )
        assert [w.name for w in listed.workflows] == [created.name]
        error = await rpc_error(client.workflows.ListWorkflows(wf.ListWorkflowsRequest()))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert grpc_error_info(error).reason == "unauthenticated"  # rich details pass too
    over_rest = assert_json(await rest.get(f"/v1/{created.name}"))
    assert (over_rest["name"], over_rest["spec_hash"]) == (created.name, created.spec_hash)


# --- request ids ---


async def test_responses_carry_the_request_id_and_errors_repeat_it(
    rest: httpx.AsyncClient,
) -> None:
    ok = await rest.get("/v1/workflows")
    assert ok.status_code == 200
    generated = ok.headers["x-request-id"]
    assert generated

    missing = await rest.get(f"/v1/workflows/{uuid.uuid4()}")
    body = api_error(missing, 404, 5, "not_found")  # RequestInfo.request_id == the header
    assert detail(body, "RequestInfo")["request_id"] != generated  # one id per request

    sent = "client-req-7f3a9c"
    echoed = await rest.get("/v1/workflows", headers={"x-request-id": sent})
    assert echoed.headers["x-request-id"] == sent
    failed = await rest.get(f"/v1/workflows/{uuid.uuid4()}", headers={"x-request-id": sent})
    body = api_error(failed, 404, 5, "not_found")
    assert failed.headers["x-request-id"] == sent
    assert detail(body, "RequestInfo")["request_id"] == sent
