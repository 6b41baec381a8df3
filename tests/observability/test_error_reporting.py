"""Internal errors to Sentry (observability/error_reporting.py), against a local Sentry ingest
endpoint (tests/support/sentry.py): with `SENTRY_DSN` set, a call's unexpected exception and a
node that crashed arrive as events with their type and tags, and nothing secret rides along;
without it nothing is set up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from support.api_fixtures import RunningApi, api_settings, running_api
from support.api_helpers import client_of, rpc_error
from support.plugins import ControlledNodes, plugin_node, workflow
from support.runs import collect, terminal
from support.sentry import SentryReceiver

from agentflow_grpc import __version__
from agentflow_grpc._gen.agentflow.v1 import workflow_pb2 as wf
from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType
from agentflow_grpc.observability import error_reports
from agentflow_grpc.observability.error_reporting import configure_error_reporting
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.registry import SourceSet
from agentflow_grpc.spec import validate_spec

GET_WORKFLOW = "/agentflow.v1.WorkflowService/GetWorkflow"


@pytest.fixture
async def sentry(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SentryReceiver]:
    async with SentryReceiver() as receiver:
        monkeypatch.setenv("SENTRY_DSN", receiver.dsn)
        monkeypatch.setenv("SENTRY_ENVIRONMENT", "test")
        monkeypatch.delenv("SENTRY_RELEASE", raising=False)
        yield receiver


@pytest.fixture
async def reporting_api(
    sentry: SentryReceiver, migrated_dsn: str, redis_url: str, owner: object
) -> AsyncIterator[RunningApi]:
    """A server whose app was opened with SENTRY_DSN pointing at `sentry`."""
    async with running_api(api_settings(migrated_dsn, redis_url)) as running:
        yield running


def exception_of(event: dict[str, Any]) -> dict[str, Any]:
    values: list[dict[str, Any]] = event["exception"]["values"]
    return values[-1]  # the one raised last (Sentry lists causes first)


def test_without_a_dsn_nothing_is_set_up() -> None:
    reporting = configure_error_reporting(None)
    assert not reporting.enabled
    assert not error_reports.enabled()
    error_reports.report(RuntimeError("nowhere to go"), method="/x")  # and costs nothing
    reporting.close()


async def test_an_internal_error_of_a_call_reaches_sentry_with_its_method_and_no_secret(
    reporting_api: RunningApi, sentry: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = reporting_api.server.app

    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the version cache is confused")

    monkeypatch.setattr(app.workflows, "get", crash)
    async with reporting_api.channel() as channel:
        error = await rpc_error(
            client_of(channel).workflows.GetWorkflow(
                wf.GetWorkflowRequest(name=f"workflows/{uuid.uuid4()}"),
                metadata=reporting_api.metadata(),
            )
        )
    assert error.code() is grpc.StatusCode.INTERNAL
    request_id = dict(error.initial_metadata())["x-request-id"]

    event = await sentry.wait_for_event(lambda e: e.get("tags", {}).get("method") == GET_WORKFLOW)
    raised = exception_of(event)
    assert (raised["type"], raised["value"]) == ("RuntimeError", "the version cache is confused")
    assert any(frame["function"] == "crash" for frame in raised["stacktrace"]["frames"])
    assert all("vars" not in frame for frame in raised["stacktrace"]["frames"])
    assert event["tags"]["request_id"] == request_id
    assert uuid.UUID(event["tags"]["tenant_id"])
    assert (event["environment"], event["release"]) == ("test", f"agentflow@{__version__}")
    assert sentry.projects == ["1"] * len(sentry.projects)
    assert "request" not in event
    sent = b"".join(sentry.bodies)
    for key in (*reporting_api.keys.values(), reporting_api.other_tenant_key):
        assert key.encode() not in sent
    assert b"x-api-key" not in sent
    assert b"sk-" not in sent


async def test_a_node_that_crashed_reaches_sentry_with_its_node(sentry: SentryReceiver) -> None:
    reporting = configure_error_reporting(sentry.dsn)
    try:
        nodes = ControlledNodes()
        engine = ExecutionEngine(metrics=Metrics(), registry=nodes.registry, node_timeout=10)
        document = workflow(
            [plugin_node("oops", "test.crash")], [("start", "oops")], {"o": "nodes.oops.output"}
        )
        spec = validate_spec(document, plugins=nodes.registry.catalog).spec
        assert spec is not None
        events = await collect(engine.execute(spec, {}, sources=SourceSet([])))
        assert terminal(events).type is EventType.EXECUTION_FAILED

        event = await sentry.wait_for_event(lambda e: e.get("tags", {}).get("node_id") == "oops")
    finally:
        await asyncio.to_thread(reporting.close)
    assert exception_of(event)["type"] == "ValueError"
    assert event["tags"]["node_type"] == "plugin"
    assert not error_reports.enabled()  # closed: reports go nowhere again
