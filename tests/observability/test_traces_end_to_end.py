"""Traces end to end: a real server, configured only by the standard OTEL_* variables, exports its
spans through the real OTLP exporter (BatchSpanProcessor, as in production) to a local receiver
(tests/support/otlp.py), over http/protobuf in process and over gRPC from `agentflow serve`.

What a trace of a run holds: the RPC's SERVER span (continuing the caller's `traceparent`, from
gRPC metadata or through Envoy from an HTTP header) → `execution {workflow}` → a `node {id}` span
per attempt → the nodes' CLIENT spans (`chat {model}`, the database's, the HTTP call's), all one
trace, whose id the call returns as `x-trace-id` and the execution stores. A background run
(`StartExecution`) continues the call's trace on whichever worker runs it. No secret (API key,
source secrets, query strings) and no prompt text (unless AGENTFLOW_TRACE_CONTENT) is exported.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import Client, client_of, struct
from support.crm_api import CrmApi
from support.gateway_fixtures import APP_ORIGIN, read_sse, start_gateway
from support.otlp import OtlpReceiver, ReceivedSpan
from support.storage import create_database

from agentflow_grpc._gen.agentflow.v1 import execution_pb2, source_pb2, workflow_pb2
from agentflow_grpc.model.records import Role
from agentflow_grpc.storage import tenants
from agentflow_grpc.storage.crypto import Keyring
from agentflow_grpc.storage.database import Database
from agentflow_grpc.testing import FakeProviderServer

# What must never be exported.
LLM_KEY = "sk-trace-secret-5b1e"
CRM_TOKEN = "crm-trace-secret-77aa"
DB_PASSWORD = "pg-trace-secret-0c3d"
QUERY_SECRET = "query-trace-secret-91fe"
PROMPT_MARKER = "prompt-marker-4417"

# A caller's own trace: W3C traceparent (version, trace id, parent span id, sampled).
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def otel_environment(monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver) -> None:
    """The server's only tracing configuration: the standard variables, read at open_app."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agentflow-traced")


@pytest.fixture
async def traced_api(
    otel_environment: None, migrated_dsn: str, redis_url: str, owner: object
) -> AsyncIterator[RunningApi]:
    async with running_api(api_settings(migrated_dsn, redis_url)) as running:
        yield running


@pytest.fixture
async def traced(traced_api: RunningApi) -> AsyncIterator[Client]:
    async with traced_api.channel() as channel:
        yield client_of(channel)


# --- helpers ---


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, sorted(span.name for span in spans))
    return found[0]


def child(spans: list[ReceivedSpan], parent: ReceivedSpan) -> ReceivedSpan:
    found = [span for span in spans if span.parent_span_id == parent.span_id]
    assert len(found) == 1, (parent.name, [span.name for span in found])
    return found[0]


def of_trace(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.trace_id == trace_id]


def has(*names: str, trace_id: str = CALLER_TRACE) -> Any:
    """A predicate: the trace holds spans of every name."""

    def holds(spans: list[ReceivedSpan]) -> bool:
        got = {span.name for span in spans if span.trace_id == trace_id}
        return set(names) <= got

    return holds


async def exported(api: RunningApi, receiver: OtlpReceiver, predicate: Any) -> list[ReceivedSpan]:
    """Flush the app's spans (the batch processor's force_flush) until `predicate` holds: a
    span ends a moment after the caller has its answer (a run's span after the log is stored)."""
    tracing = api.server.app.tracing
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        assert await asyncio.to_thread(tracing.force_flush, 10)
        spans = receiver.spans()
        if predicate(spans):
            return spans
        assert asyncio.get_running_loop().time() < deadline, sorted(s.name for s in spans)
        await asyncio.sleep(0.05)


def assert_nothing_secret(receiver: OtlpReceiver, *secrets: str) -> None:
    """Not in any attribute, name, status or resource: not anywhere in what was exported."""
    payload = b"\n".join(receiver.payloads())
    assert payload
    for secret in secrets:
        assert secret.encode() not in payload, secret


def traced_spec(name: str = "traced") -> dict[str, Any]:
    """input → database (warehouse) → http (crm, a secret in the query) → llm → output."""
    return {
        "api_version": "agentflow/v1",
        "name": name,
        "inputs": {"customer": {"type": "integer"}},
        "outputs": {"answer": {"from": "nodes.answer.output.text"}},
        "nodes": [
            {"id": "start", "type": "input"},
            {
                "id": "orders",
                "type": "database",
                "source": "warehouse",
                "config": {
                    "query": "SELECT count(*) AS n FROM orders WHERE customer_id = $1",
                    "params": ["{{ inputs.customer }}"],
                },
            },
            {
                "id": "account",
                "type": "http",
                "source": "crm",
                "config": {
                    "url": "/v2/accounts/acc_1",
                    "query": {"api_token": QUERY_SECRET, "include_contacts": "true"},
                    "extract": {"name": "$.account.name"},
                },
            },
            {
                "id": "answer",
                "type": "llm",
                "source": "openai-main",
                "config": {
                    "prompt": f"[{PROMPT_MARKER}] {{{{ nodes.orders.output.rows[0].n }}}} "
                    "orders of {{ nodes.account.output.name }}"
                },
            },
        ],
        "edges": [
            {"from": "start", "to": "orders"},
            {"from": "orders", "to": "account"},
            {"from": "account", "to": "answer"},
        ],
    }


def llm_spec(name: str = "ask") -> dict[str, Any]:
    return {
        "api_version": "agentflow/v1",
        "name": name,
        "outputs": {"answer": {"from": "nodes.answer.output.text"}},
        "nodes": [
            {"id": "start", "type": "input"},
            {
                "id": "answer",
                "type": "llm",
                "source": "openai-main",
                "config": {"prompt": f"[{PROMPT_MARKER}] say hello", "temperature": 0.2},
            },
        ],
        "edges": [{"from": "start", "to": "answer"}],
    }


async def create_source(
    client: Client, metadata: Any, name: str, kind: str, config: dict[str, Any], **secrets: str
) -> None:
    source = source_pb2.Source(display_name=name, type=kind, config=struct(config), secrets=secrets)
    await client.sources.CreateSource(
        source_pb2.CreateSourceRequest(source=source), metadata=metadata
    )


async def create_llm_source(client: Client, metadata: Any, provider: FakeProviderServer) -> None:
    config = {"base_url": f"{provider.url}/v1", "model": "fake-model"}
    await create_source(client, metadata, "openai-main", "openai", config, api_key=LLM_KEY)


async def run_to_end(
    client: Client, metadata: Any, request: execution_pb2.ExecuteWorkflowRequest
) -> tuple[list[execution_pb2.ExecutionEvent], dict[str, str]]:
    call = client.executions.ExecuteWorkflow(request, metadata=metadata, timeout=60)
    events = [event async for event in call]
    return events, dict(await call.initial_metadata())


def plain_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# --- over gRPC, in process: the whole tree ---


async def test_a_run_is_one_trace_from_the_callers_span_down_to_every_client_call(
    traced_api: RunningApi,
    traced: Client,
    receiver: OtlpReceiver,
    provider: FakeProviderServer,
    crm_api: tuple[str, CrmApi],
    warehouse_dsn: str,
) -> None:
    md = traced_api.metadata(Role.ADMIN)
    crm_url, _ = crm_api
    await create_llm_source(traced, md, provider)
    await create_source(
        traced, md, "crm", "http", {"base_url": crm_url, "allow_private_network": True},
        token=CRM_TOKEN,
    )  # fmt: skip
    await create_source(
        traced, md, "warehouse", "postgres", {"dsn": warehouse_dsn}, password=DB_PASSWORD
    )
    workflow = await traced.workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(
            workflow=workflow_pb2.Workflow(spec=struct(traced_spec()))
        ),
        metadata=md,
    )
    events, headers = await run_to_end(
        traced,
        (*md, ("traceparent", TRACEPARENT)),
        execution_pb2.ExecuteWorkflowRequest(
            workflow=workflow.name, inputs=struct({"customer": 42})
        ),
    )

    assert events[-1].type == "execution_completed", plain_dict(events[-1])
    assert headers["x-trace-id"] == CALLER_TRACE  # the caller's trace, continued
    stored = await traced.executions.GetExecution(
        execution_pb2.GetExecutionRequest(name=events[-1].execution), metadata=md
    )
    assert stored.trace_id == CALLER_TRACE

    names = ("execution traced", "chat fake-model", "GET", "node answer")
    spans = of_trace(await exported(traced_api, receiver, has(*names)), CALLER_TRACE)

    rpc = one(spans, "/agentflow.v1.ExecutionService/ExecuteWorkflow")
    assert (rpc.kind, rpc.parent_span_id) == ("SERVER", CALLER_SPAN)
    assert rpc.attributes["rpc.system"] == "grpc"
    assert rpc.attributes["rpc.service"] == "agentflow.v1.ExecutionService"
    assert rpc.attributes["rpc.method"] == "ExecuteWorkflow"
    assert rpc.attributes["rpc.grpc.status_code"] == 0
    assert uuid.UUID(rpc.attributes["agentflow.tenant.id"])
    assert rpc.attributes["agentflow.request_id"]
    assert rpc.resource["service.name"] == "agentflow-traced"

    execution = one(spans, "execution traced")
    assert (execution.kind, execution.parent_span_id) == ("INTERNAL", rpc.span_id)
    assert execution.attributes["agentflow.execution.id"] == events[-1].execution.split("/")[1]
    assert execution.attributes["agentflow.workflow.id"] == workflow.name.split("/")[1]
    assert execution.attributes["agentflow.workflow.version"] == 1
    assert execution.attributes["agentflow.workflow.name"] == "traced"
    assert execution.attributes["agentflow.tenant.id"] == rpc.attributes["agentflow.tenant.id"]
    assert execution.attributes["agentflow.execution.status"] == "completed"
    assert execution.attributes["agentflow.usage.output_tokens"] > 0
    assert execution.status == "UNSET"

    nodes = {
        span.attributes["agentflow.node.id"]: span
        for span in spans
        if span.name.startswith("node ")
    }
    assert set(nodes) == {"start", "orders", "account", "answer"}
    for node_id, node in nodes.items():
        assert node.name == f"node {node_id}"
        assert (node.kind, node.parent_span_id) == ("INTERNAL", execution.span_id)
        assert node.attributes["agentflow.node.attempt"] == 1
    assert nodes["orders"].attributes["agentflow.node.type"] == "database"

    database = child(spans, nodes["orders"])
    namespace = warehouse_dsn.split("?")[0].rsplit("/", 1)[1]
    assert database.name == f"SELECT {namespace}"
    assert database.kind == "CLIENT"
    assert database.attributes["db.system.name"] == "postgresql"
    assert database.attributes["db.operation.name"] == "SELECT"
    assert database.attributes["db.namespace"] == namespace
    assert database.attributes["db.response.returned_rows"] == 1
    assert "db.query.text" not in database.attributes  # AGENTFLOW_TRACE_CONTENT is off

    http = child(spans, nodes["account"])
    assert (http.name, http.kind) == ("GET", "CLIENT")
    assert http.attributes["http.request.method"] == "GET"
    assert http.attributes["url.full"] == (
        f"{crm_url}/v2/accounts/acc_1?api_token=REDACTED&include_contacts=REDACTED"
    )
    assert http.attributes["server.address"] == "127.0.0.1"
    assert http.attributes["server.port"] == int(crm_url.rsplit(":", 1)[1])
    assert http.attributes["http.response.status_code"] == 200

    chat = child(spans, nodes["answer"])
    assert (chat.name, chat.kind, chat.status) == ("chat fake-model", "CLIENT", "UNSET")
    attributes = chat.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "fake-model"
    assert attributes["gen_ai.response.model"]
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.usage.input_tokens"] > 0
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == int(provider.url.rsplit(":", 1)[1])
    assert not {"gen_ai.input.messages", "gen_ai.output.messages"} & set(attributes)

    api_key = dict(md)["x-api-key"]
    assert_nothing_secret(
        receiver, LLM_KEY, CRM_TOKEN, DB_PASSWORD, QUERY_SECRET, PROMPT_MARKER, api_key
    )


async def test_a_failed_provider_call_marks_its_span_its_node_and_its_run(
    traced_api: RunningApi, traced: Client, receiver: OtlpReceiver, provider: FakeProviderServer
) -> None:
    md = traced_api.metadata(Role.ADMIN)
    await create_llm_source(traced, md, provider)
    provider.add_rule(contains=PROMPT_MARKER, status=429, message="slow down")
    events, headers = await run_to_end(
        traced, md, execution_pb2.ExecuteWorkflowRequest(spec=struct(llm_spec("limited")))
    )

    assert events[-1].type == "execution_failed"
    trace_id = headers["x-trace-id"]  # a trace of its own: the caller sent none
    assert len(trace_id) == 32
    assert trace_id != CALLER_TRACE
    spans = of_trace(
        await exported(traced_api, receiver, has("execution limited", trace_id=trace_id)),
        trace_id,
    )
    rpc = one(spans, "/agentflow.v1.ExecutionService/ExecuteWorkflow")
    assert rpc.parent_span_id == ""
    chat = one(spans, "chat fake-model")
    assert (chat.status, chat.attributes["error.type"]) == ("ERROR", "429")
    node = one(spans, "node answer")
    assert (node.status, node.attributes["error.type"]) == ("ERROR", "provider.rate_limited")
    execution = one(spans, "execution limited")
    assert (execution.status, execution.attributes["error.type"]) == (
        "ERROR",
        "provider.rate_limited",
    )
    assert execution.attributes["agentflow.execution.status"] == "failed"
    assert_nothing_secret(receiver, LLM_KEY, PROMPT_MARKER)


async def test_prompts_and_completions_are_recorded_only_when_the_setting_allows(
    otel_environment: None,
    migrated_dsn: str,
    redis_url: str,
    owner: object,
    receiver: OtlpReceiver,
    provider: FakeProviderServer,
) -> None:
    provider.add_rule(contains=PROMPT_MARKER, reply="hello from the model")
    settings = api_settings(migrated_dsn, redis_url, trace_content=True)
    async with running_api(settings) as api, api.channel() as channel:
        client = client_of(channel)
        md = api.metadata(Role.ADMIN)
        await create_llm_source(client, md, provider)
        events, headers = await run_to_end(
            client, md, execution_pb2.ExecuteWorkflowRequest(spec=struct(llm_spec()))
        )
        assert events[-1].type == "execution_completed"
        trace_id = headers["x-trace-id"]
        spans = await exported(api, receiver, has("chat fake-model", trace_id=trace_id))

    chat = one(of_trace(spans, trace_id), "chat fake-model")
    assert chat.attributes["gen_ai.request.temperature"] == 0.2
    assert json.loads(chat.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": f"[{PROMPT_MARKER}] say hello"}]}
    ]
    assert json.loads(chat.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "hello from the model"}],
            "finish_reason": "stop",
        }
    ]
    assert_nothing_secret(receiver, LLM_KEY)


async def test_a_refused_call_returns_its_trace_id_in_the_trailers(
    traced_api: RunningApi, traced: Client
) -> None:
    caller = (("traceparent", TRACEPARENT),)
    missing = traced.executions.GetExecution(
        execution_pb2.GetExecutionRequest(name=f"executions/{uuid.uuid4()}"),
        metadata=(*traced_api.metadata(Role.VIEWER), *caller),
    )
    with pytest.raises(grpc.aio.AioRpcError) as not_found:
        await missing
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
    assert dict(not_found.value.trailing_metadata() or ())["x-trace-id"] == CALLER_TRACE
    # A stream refused before its first message: a trailers-only response.
    refused = traced.executions.ExecuteWorkflow(
        execution_pb2.ExecuteWorkflowRequest(spec=struct(llm_spec())), metadata=caller
    )
    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        async for _ in refused:
            pass
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dict(unauthenticated.value.trailing_metadata() or ())["x-trace-id"] == CALLER_TRACE


# --- REST through Envoy ---


async def test_rest_callers_continue_their_trace_through_envoy_and_read_x_trace_id(
    traced_api: RunningApi,
    traced: Client,
    receiver: OtlpReceiver,
    provider: FakeProviderServer,
    tmp_path: Path,
) -> None:
    await create_llm_source(traced, traced_api.metadata(Role.ADMIN), provider)
    async with (
        start_gateway(traced_api, tmp_path / "envoy") as gateway,
        gateway.client() as rest,
    ):
        stream = await read_sse(
            rest,
            "POST",
            "/v1/executions:execute",
            json_body={"spec": llm_spec("over-rest"), "inputs": {}},
            headers={"traceparent": TRACEPARENT, "origin": APP_ORIGIN},
        )
        assert stream.status == 200, stream.body
        assert stream.events[-1]["type"] == "execution_completed"
        assert stream.headers["x-trace-id"] == CALLER_TRACE
        exposed = {h.strip() for h in stream.headers["access-control-expose-headers"].split(",")}
        assert "x-trace-id" in exposed  # a browser app may read it

        read = await rest.get(f"/v1/{stream.events[-1]['execution']}")
        assert read.status_code == 200, read.text
        assert read.json()["trace_id"] == CALLER_TRACE
        assert len(read.headers["x-trace-id"]) == 32  # the read's own trace
        assert read.headers["x-trace-id"] != CALLER_TRACE

    spans = of_trace(
        await exported(traced_api, receiver, has("execution over-rest", "chat fake-model")),
        CALLER_TRACE,
    )
    rpc = one(spans, "/agentflow.v1.ExecutionService/ExecuteWorkflow")
    assert rpc.parent_span_id == CALLER_SPAN  # Envoy passed the header on as metadata
    execution = one(spans, "execution over-rest")
    assert execution.parent_span_id == rpc.span_id
    assert child(spans, one(spans, "node answer")).name == "chat fake-model"
    assert_nothing_secret(receiver, LLM_KEY, traced_api.keys[Role.ADMIN])


# --- `agentflow serve` over gRPC: a background run on a worker ---


def serve_environment(
    dsn: str, home: Path, redis_url: str, receiver: OtlpReceiver
) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "DATABASE_URL" and not name.startswith(("AGENTFLOW_", "OTEL_"))
    }
    env.update(
        DATABASE_URL=dsn,
        REDIS_URL=redis_url,
        AGENTFLOW_REDIS_PREFIX=f"test-{uuid.uuid4().hex[:12]}",
        AGENTFLOW_HOME=str(home),
        AGENTFLOW_SECRET_KEYS=f"k1:{Keyring.generate_key()}",
        AGENTFLOW_GRPC_PORT="0",
        AGENTFLOW_SHUTDOWN_GRACE="1",
        AGENTFLOW_LOG_FORMAT="json",
        AGENTFLOW_PROCESSES="1",  # the spans of one server process
        # Tracing: the standard variables only.
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_SERVICE_NAME="agentflow-worker",
    )
    return env


async def runner_and_editor_keys(dsn: str) -> tuple[str, str]:
    database = await Database.connect(dsn)
    try:
        async with database.system() as connection:
            tenant = await tenants.create_tenant(connection, "traced", actor="operator:test")
            _, runner = await tenants.create_api_key(
                connection, tenant.id, role=Role.RUNNER, actor="operator:test"
            )
            _, editor = await tenants.create_api_key(
                connection, tenant.id, role=Role.EDITOR, actor="operator:test"
            )
        return runner, editor
    finally:
        await database.close()


@pytest.mark.slow
async def test_a_background_run_continues_the_trace_of_the_call_that_started_it(
    postgres_dsn: str,
    redis_url: str,
    tmp_path: Path,
    receiver: OtlpReceiver,
    provider: FakeProviderServer,
) -> None:
    dsn = await create_database(postgres_dsn)
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentflow_grpc", "serve"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=serve_environment(dsn, tmp_path, redis_url, receiver),
        )
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("grpc://"), (line, log.read_text())
        runner, editor = await runner_and_editor_keys(dsn)
        async with grpc.aio.insecure_channel(line.strip().removeprefix("grpc://")) as channel:
            client = client_of(channel)
            await create_llm_source(client, (("x-api-key", editor),), provider)
            call = client.executions.StartExecution(
                execution_pb2.StartExecutionRequest(spec=struct(llm_spec("queued"))),
                metadata=(("x-api-key", runner), ("traceparent", TRACEPARENT)),
            )
            started = await call
            assert dict(await call.initial_metadata())["x-trace-id"] == CALLER_TRACE
            assert started.trace_id == CALLER_TRACE

            async def ended() -> execution_pb2.Execution | None:
                execution = await client.executions.GetExecution(
                    execution_pb2.GetExecutionRequest(name=started.name),
                    metadata=(("x-api-key", runner),),
                )
                return execution if execution.end_time.seconds else None

            deadline = asyncio.get_running_loop().time() + 30
            while (execution := await ended()) is None:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            assert execution.state == execution_pb2.Execution.STATE_COMPLETED
            assert execution.trace_id == CALLER_TRACE
        process.send_signal(signal.SIGTERM)  # the server's exit exports what is left
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    spans = of_trace(
        receiver.wait_for(has("execution queued", "chat fake-model"), timeout=10), CALLER_TRACE
    )
    start = one(spans, "/agentflow.v1.ExecutionService/StartExecution")
    assert (start.kind, start.parent_span_id, start.protocol) == ("SERVER", CALLER_SPAN, "grpc")
    execution_span = one(spans, "execution queued")  # on a worker, after the call returned
    assert execution_span.parent_span_id == start.span_id
    assert execution_span.attributes["agentflow.execution.id"] == started.name.split("/")[1]
    node = one(spans, "node answer")
    assert node.parent_span_id == execution_span.span_id
    assert child(spans, node).name == "chat fake-model"
    assert start.resource["service.name"] == "agentflow-worker"
    assert_nothing_secret(receiver, LLM_KEY, runner, editor, PROMPT_MARKER)

    # Its log lines carry the trace, the request and the tenant.
    lines = [json.loads(text) for text in log.read_text().splitlines() if text.startswith("{")]
    access = [
        entry
        for entry in lines
        if entry.get("event") == "rpc" and entry.get("method", "").endswith("/StartExecution")
    ]
    assert len(access) == 1
    assert access[0]["trace_id"] == CALLER_TRACE
    assert access[0]["span_id"] == start.span_id
    assert access[0]["tenant_id"] == start.attributes["agentflow.tenant.id"]
