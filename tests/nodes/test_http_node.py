"""The http node end to end: templates, sources, the SSRF guard, extraction, errors and retries.

Requests go through the real guarded httpx2 client to a local CRM API (tests/support/crm_api.py);
the tests look at what that server received, the node's output and the run's events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.crm_api import CrmApi, serve
from support.retries import FAST_RETRY
from support.runs import (
    error_of,
    failed_events,
    of_type,
    output_of,
    run_document,
    run_spec,
    single_node_workflow,
    started_attempts,
    validated,
    will_retry,
)
from support.sources import crm_source

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.http_api import HttpApiAdapter
from agentflow_grpc.sources.registry import SourceSet


def workflow(node: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """input → one http node `call` → output `result` (the node's whole output)."""
    return single_node_workflow(
        {"id": "call", "type": "http", **node}, name="http-node-test", inputs=inputs
    )


@pytest.fixture
async def other_api() -> AsyncIterator[tuple[str, CrmApi]]:
    """A second server: another origin, to see what leaves a source's own origin."""
    api = CrmApi()
    async with serve(api.app()) as url:
        yield url, api


# --- output ---


async def test_extract_gives_a_value_or_null_for_singular_paths_and_a_list_otherwise(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, _ = crm_api
    node = {
        "source": "crm",
        "config": {
            "url": "/v2/accounts/acc_12345678",
            "query": {"include_contacts": "true"},
            "extract": {
                "name": "$.account.name",
                "employees": "$.account.firmographics.employee_count",
                "first_deal": "$.account.deals[0].id",
                "missing": "$.account.no_such_field",
                "emails": "$.account.contacts[*].email",
                "open_deals": "$.account.deals[?@.stage == 'open'].id",
                "no_matches": "$.account.deals[?@.stage == 'lost']",
            },
        },
    }
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert output_of(events) == {
        "name": "Acme GmbH",
        "employees": 250,
        "first_deal": "d1",
        "missing": None,
        "emails": ["ada@example.com", "bob@example.com"],
        "open_deals": ["d1"],
        "no_matches": [],
    }


async def test_without_extract_the_output_is_status_headers_and_parsed_body(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, _ = crm_api
    node = {
        "source": "crm",
        "config": {"method": "POST", "url": "/hooks/opportunities", "body": {}},
    }
    events = await run_document(engine, workflow(node), [crm_source(url)])

    output = output_of(events)
    assert set(output) == {"status", "headers", "body"}
    assert output["status"] == 201
    assert output["headers"]["content-type"].startswith("application/json")
    assert output["body"] == {"id": "opp_1", "owner": {"email": "rep@example.com"}}
    completed = of_type(events, EventType.NODE_COMPLETED)
    assert [event.node_id for event in completed] == ["start", "call"]
    assert completed[-1].data["output"] == output


async def test_a_body_that_is_not_json_is_returned_as_text(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, _ = crm_api
    node = {"source": "crm", "config": {"url": "/plain"}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    output = output_of(events)
    assert output["status"] == 200
    assert output["body"] == "plain words, not JSON"


# --- what is sent ---


async def test_method_headers_query_and_body_templates_reach_the_api(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    inputs = {
        "seats": {"type": "integer"},
        "company": {"type": "string"},
        "urgent": {"type": "boolean"},
    }
    node = {
        "source": "crm",
        "config": {
            "method": "PATCH",
            "url": "/echo",
            "headers": {"X-Company": "{{ inputs.company | upper }}"},
            "query": {"seats": "{{ inputs.seats }}", "dry_run": "yes"},
            "body": {
                "seats": "{{ inputs.seats }}",
                "urgent": "{{ inputs.urgent }}",
                "note": "{{ inputs.company }} wants {{ inputs.seats }} seats",
                "tags": ["{{ inputs.company }}", 7, None],
                "nested": {"double": "{{ inputs.seats * 2 }}", "fixed": True},
            },
        },
    }
    events = await run_document(
        engine,
        workflow(node, inputs),
        [crm_source(url)],
        {"seats": 40, "company": "Acme", "urgent": True},
    )

    expected_body = {
        "seats": 40,
        "urgent": True,
        "note": "Acme wants 40 seats",
        "tags": ["Acme", 7, None],
        "nested": {"double": 80, "fixed": True},
    }
    assert output_of(events)["body"] == {
        "method": "PATCH",
        "query": {"seats": "40", "dry_run": "yes"},
        "body": expected_body,
    }
    (request,) = api.requests
    assert request["method"] == "PATCH"
    assert request["path"] == "/echo"
    assert request["query"] == {"seats": "40", "dry_run": "yes"}
    assert request["headers"]["X-Company"] == "ACME"
    assert request["headers"]["Authorization"] == "Bearer crm-secret"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == expected_body
    assert isinstance(request["body"]["seats"], int)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_the_configured_method_is_sent(
    method: str, engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    config: dict[str, Any] = {"method": method, "url": "/echo"}
    if method != "GET":
        config["body"] = {"kind": method.lower()}
    events = await run_document(
        engine, workflow({"source": "crm", "config": config}), [crm_source(url)]
    )

    assert output_of(events)["body"]["method"] == method
    assert [(r["method"], r["body"]) for r in api.requests] == [(method, config.get("body"))]


async def test_a_head_request_has_status_and_headers_and_no_body(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "config": {"method": "HEAD", "url": "/echo"}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    output = output_of(events)
    assert output["status"] == 200
    assert output["headers"]["x-echo"] == "yes"
    assert output["body"] == ""
    assert [r["method"] for r in api.requests] == ["HEAD"]


async def test_source_default_headers_and_custom_auth_header_are_sent(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    source = crm_source(
        url,
        headers={"X-Tenant": "t-1", "Accept": "application/json"},
        auth_header="X-Api-Key",
        auth_scheme=None,
    )
    node = {"source": "crm", "config": {"url": "/echo", "headers": {"Accept": "text/plain"}}}
    events = await run_document(engine, workflow(node), [source])

    assert output_of(events)["status"] == 200
    (request,) = api.requests
    assert request["headers"]["X-Tenant"] == "t-1"
    assert request["headers"]["X-Api-Key"] == "crm-secret"
    assert "Authorization" not in request["headers"]
    assert request["headers"]["Accept"] == "text/plain"  # the node's header wins


@pytest.mark.parametrize(
    ("base_path", "node_url"),
    [("", "/v2/accounts/acc_12345678"), ("/v2", "/accounts/acc_12345678")],
    ids=["root", "base-with-path"],
)
async def test_a_relative_url_joins_the_source_base_url(
    base_path: str, node_url: str, engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "config": {"url": node_url, "extract": {"id": "$.account.id"}}}
    events = await run_document(engine, workflow(node), [crm_source(url + base_path)])

    assert output_of(events) == {"id": "acc_12345678"}
    assert [r["path"] for r in api.requests] == ["/v2/accounts/acc_12345678"]


async def test_an_absolute_url_inside_the_source_origin_gets_the_credentials(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "config": {"url": url + "/echo"}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert output_of(events)["status"] == 200
    assert [r["headers"]["Authorization"] for r in api.requests] == ["Bearer crm-secret"]


# --- origins and the SSRF guard ---


@pytest.mark.parametrize(
    "template",
    ["{{ inputs.other }}/echo", "  {{ inputs.other }}/echo", "HTTP://{{ inputs.other[7:] }}/echo"],
    ids=["plain", "leading-spaces", "upper-case-scheme"],
)
async def test_an_absolute_url_to_another_origin_with_a_source_sends_nothing(
    template: str,
    engine: ExecutionEngine,
    crm_api: tuple[str, CrmApi],
    other_api: tuple[str, CrmApi],
) -> None:
    url, api = crm_api
    other_url, other = other_api
    node = {"source": "crm", "retry": FAST_RETRY, "config": {"url": template}}
    events = await run_document(
        engine,
        workflow(node, {"other": {"type": "string"}}),
        [crm_source(url)],
        {"other": other_url},
    )

    error = error_of(events)
    assert error["code"] == "http.foreign_origin"
    assert error["node_id"] == "call"
    assert started_attempts(events, "call") == [1]
    assert api.requests == []
    assert other.requests == []


async def test_a_scheme_relative_url_to_another_host_is_a_foreign_origin(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi], other_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    other_url, other = other_api
    node = {"source": "crm", "config": {"url": "//" + other_url.removeprefix("http://") + "/echo"}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert error_of(events)["code"] == "http.foreign_origin"
    assert api.requests == []
    assert other.requests == []


async def test_surrounding_whitespace_of_a_rendered_url_is_ignored(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "config": {"url": "  {{ inputs.path }}\n"}}
    events = await run_document(
        engine, workflow(node, {"path": {"type": "string"}}), [crm_source(url)], {"path": "/echo"}
    )

    assert output_of(events)["status"] == 200
    assert [r["path"] for r in api.requests] == ["/echo"]


async def test_a_node_without_source_may_not_call_a_loopback_address(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"retry": FAST_RETRY, "config": {"url": url + "/echo"}}
    events = await run_document(engine, workflow(node), [])

    error = error_of(events)
    assert error["code"] == "http.blocked_address"
    assert error["node_id"] == "call"
    assert started_attempts(events, "call") == [1]
    assert will_retry(events, "call") == [False]
    assert api.requests == []


async def test_a_node_without_source_may_not_call_localhost_by_name(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"config": {"url": url.replace("127.0.0.1", "localhost") + "/echo"}}
    events = await run_document(engine, workflow(node), [])

    assert error_of(events)["code"] == "http.blocked_address"
    assert api.requests == []


async def test_a_source_without_allow_private_network_is_blocked_too(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    source = crm_source(url, allow_private_network=False)
    node = {"source": "crm", "retry": FAST_RETRY, "config": {"url": "/echo"}}
    events = await run_document(engine, workflow(node), [source])

    assert error_of(events)["code"] == "http.blocked_address"
    assert started_attempts(events, "call") == [1]
    assert api.requests == []


async def test_a_redirect_to_the_same_server_is_followed(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {
        "source": "crm",
        "config": {
            "url": "/redirect",
            "query": {"to": "/v2/accounts/acc_12345678"},
            "extract": {"name": "$.account.name"},
        },
    }
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert output_of(events) == {"name": "Acme GmbH"}
    assert [r["path"] for r in api.requests] == ["/redirect", "/v2/accounts/acc_12345678"]
    assert [r["headers"]["Authorization"] for r in api.requests] == ["Bearer crm-secret"] * 2


async def test_a_private_network_source_cannot_be_redirected_to_another_origin(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi], other_api: tuple[str, CrmApi]
) -> None:
    """`allow_private_network` opens the source's own origin, not the whole private network."""
    url, api = crm_api
    other_url, other = other_api
    node = {"source": "crm", "config": {"url": "/redirect", "query": {"to": other_url + "/echo"}}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    error = error_of(events)
    assert error["code"] == "http.blocked_address"
    assert other_url in error["message"]
    assert [r["path"] for r in api.requests] == ["/redirect"]
    assert other.requests == []


@pytest.mark.parametrize(
    ("auth", "header"),
    [({}, "Authorization"), ({"auth_header": "X-Api-Key", "auth_scheme": None}, "X-Api-Key")],
    ids=["authorization", "custom-header"],
)
async def test_a_public_source_sends_its_credentials_to_its_own_origin_only(
    auth: dict[str, Any], header: str
) -> None:
    """A redirect to another origin must not carry the token (httpx2 drops only Authorization).

    Public servers cannot run in the tests, so the client's request hook is called directly."""
    definition = SourceDefinition(
        name="public",
        type="http",
        config={"base_url": "https://api.example.com", **auth},
        secrets={"token": "crm-secret"},
    )
    source = HttpApiAdapter().open(definition)
    try:
        (hook,) = source.client().event_hooks["request"]
        home = source.client().build_request("GET", "/accounts")
        away = source.client().build_request("GET", "https://elsewhere.example.net/collect")
        await hook(home)
        await hook(away)
        assert "crm-secret" in home.headers[header]
        assert header not in away.headers
    finally:
        await source.aclose()


async def test_a_redirect_from_a_public_node_to_loopback_is_blocked(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    """Without a source nothing private is reachable, so redirects cannot lead there either."""
    url, api = crm_api
    node = {"config": {"url": url + "/redirect", "query": {"to": url + "/echo"}}}
    events = await run_document(engine, workflow(node), [])

    assert error_of(events)["code"] == "http.blocked_address"
    assert api.requests == []


# --- limits and errors ---


@pytest.mark.parametrize("path", ["/big", "/chunked"], ids=["content-length", "chunked"])
async def test_a_response_larger_than_max_response_bytes_fails(
    path: str, engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {
        "source": "crm",
        "retry": FAST_RETRY,
        "config": {"url": path, "query": {"size": "5000"}, "max_response_bytes": 1000},
    }
    events = await run_document(engine, workflow(node), [crm_source(url)])

    error = error_of(events)
    assert error["code"] == "http.response_too_large"
    assert "1000 bytes" in error["message"]
    assert started_attempts(events, "call") == [1]
    assert len(api.requests) == 1


async def test_a_response_within_max_response_bytes_is_read(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, _ = crm_api
    node = {
        "source": "crm",
        "config": {
            "url": "/chunked",
            "query": {"size": "3000"},
            "max_response_bytes": 4000,
            "extract": {"blob": "$.blob"},
        },
    }
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert output_of(events) == {"blob": "x" * 3000}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v2/accounts/acc_missing00", 404, "http.rejected"),
        ("/status/400", 400, "http.rejected"),
        ("/status/401", 401, "http.unauthenticated"),
        ("/status/403", 403, "http.unauthenticated"),
    ],
)
async def test_client_errors_fail_at_once_without_retries(
    path: str, status: int, code: str, engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "retry": FAST_RETRY, "config": {"url": path}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    error = error_of(events)
    assert error["code"] == code
    assert error["node_id"] == "call"
    assert error["message"].startswith(f"HTTP {status}: ")
    assert started_attempts(events, "call") == [1]
    assert will_retry(events, "call") == [False]
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("status", "code"), [(503, "http.unavailable"), (429, "http.rate_limited")]
)
async def test_server_errors_and_rate_limits_are_retried_per_policy(
    status: int, code: str, engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "retry": FAST_RETRY, "config": {"url": f"/status/{status}"}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert started_attempts(events, "call") == [1, 2, 3]
    assert will_retry(events, "call") == [True, True, False]
    failed = failed_events(events, "call")
    assert {event.data["code"] for event in failed} == {code}
    assert all("retry_in" in event.data for event in failed[:2])
    assert "retry_in" not in failed[-1].data
    error = error_of(events)
    assert error == {"code": code, "message": failed[-1].data["message"], "node_id": "call"}
    assert str(status) in error["message"]
    assert len(api.requests) == 3


async def test_a_refused_connection_is_retried_as_unavailable(
    engine: ExecutionEngine, unused_tcp_port: int
) -> None:
    source = crm_source(f"http://127.0.0.1:{unused_tcp_port}")
    node = {"source": "crm", "retry": FAST_RETRY, "config": {"url": "/echo"}}
    events = await run_document(engine, workflow(node), [source])

    assert error_of(events)["code"] == "http.unavailable"
    assert started_attempts(events, "call") == [1, 2, 3]
    assert will_retry(events, "call") == [True, True, False]


async def test_failure_messages_leave_out_the_query_string(
    engine: ExecutionEngine, unused_tcp_port: int
) -> None:
    """Messages are stored with the run's events; a token in a URL must not end up there."""
    source = crm_source(f"http://127.0.0.1:{unused_tcp_port}")
    node = {"source": "crm", "config": {"url": "/echo?api_key=very-secret"}}
    events = await run_document(engine, workflow(node), [source])

    error = error_of(events)
    assert error["code"] == "http.unavailable"
    assert "/echo" in error["message"]
    assert "very-secret" not in str([event.data for event in events])


async def test_extracted_values_feed_a_downstream_node(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    document = workflow(
        {
            "source": "crm",
            "config": {
                "url": "/v2/accounts/acc_12345678",
                "extract": {"employees": "$.account.firmographics.employee_count"},
            },
        }
    )
    document["nodes"].append(
        {
            "id": "post",
            "type": "http",
            "source": "crm",
            "config": {
                "method": "POST",
                "url": "/echo",
                "body": {"employees": "{{ nodes.call.output.employees }}"},
            },
        }
    )
    document["edges"].append({"from": "call", "to": "post"})
    document["outputs"] = {"result": {"from": "nodes.post.output.body.body"}}
    events = await run_document(engine, document, [crm_source(url)])

    assert output_of(events) == {"employees": 250}
    assert api.requests[-1]["body"] == {"employees": 250}


async def test_a_redirect_loop_fails_without_retries(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "retry": FAST_RETRY, "config": {"url": "/loop"}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert error_of(events)["code"] == "http.too_many_redirects"
    assert started_attempts(events, "call") == [1]
    assert 1 < len(api.requests) <= 10


async def test_an_unsupported_url_scheme_is_invalid_and_not_retried(
    engine: ExecutionEngine,
) -> None:
    node = {"retry": FAST_RETRY, "config": {"url": "{{ inputs.url }}"}}
    events = await run_document(
        engine, workflow(node, {"url": {"type": "string"}}), [], {"url": "ftp://example.com/x"}
    )

    assert error_of(events)["code"] == "http.invalid_url"
    assert started_attempts(events, "call") == [1]


async def test_a_header_value_with_a_line_break_is_refused_and_not_retried(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {
        "source": "crm",
        "retry": FAST_RETRY,
        "config": {"url": "/echo", "headers": {"X-Name": "{{ inputs.name }}"}},
    }
    events = await run_document(
        engine,
        workflow(node, {"name": {"type": "string"}}),
        [crm_source(url)],
        {"name": "ada\r\nX-Injected: yes"},
    )

    assert error_of(events)["code"] == "http.invalid_request"
    assert started_attempts(events, "call") == [1]
    assert all("X-Injected" not in r["headers"] for r in api.requests)


async def test_cookies_a_response_sets_are_not_sent_on_later_requests(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    document = workflow({"source": "crm", "config": {"url": "/set-cookie"}})
    document["nodes"].append(
        {"id": "after", "type": "http", "source": "crm", "config": {"url": "/echo"}}
    )
    document["edges"].append({"from": "call", "to": "after"})
    document["outputs"]["after"] = {"from": "nodes.after.output.status"}
    sources = SourceSet([crm_source(url)])
    try:
        spec = validated(document, sources)
        for _ in range(2):  # two runs sharing the source's client
            events = await run_spec(engine, spec, sources)
            assert output_of(events, "after") == 200
    finally:
        await sources.aclose()

    assert [r["path"] for r in api.requests] == ["/set-cookie", "/echo"] * 2
    assert all("Cookie" not in r["headers"] for r in api.requests)


@pytest.mark.slow
async def test_a_source_request_timeout_is_retried_as_http_timeout(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, api = crm_api
    node = {"source": "crm", "retry": FAST_RETRY, "config": {"url": "/slow"}}
    events = await run_document(engine, workflow(node), [crm_source(url, timeout=0.2)])

    assert error_of(events)["code"] == "http.timeout"
    assert will_retry(events, "call") == [True, True, False]
    assert len(api.requests) == 3


@pytest.mark.slow
async def test_a_slow_api_exceeds_the_node_deadline(
    engine: ExecutionEngine, crm_api: tuple[str, CrmApi]
) -> None:
    url, _ = crm_api
    node = {"source": "crm", "timeout": 0.2, "config": {"url": "/slow"}}
    events = await run_document(engine, workflow(node), [crm_source(url)])

    assert error_of(events)["code"] == "node.deadline_exceeded"
    assert will_retry(events, "call") == [False]
