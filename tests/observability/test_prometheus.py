"""A real Prometheus scrapes a running server while runs go through the gRPC API, and answers
PromQL about them: executions by status, a quantile of node durations, the calls, the LLM
calls' GenAI metrics, the queue's wait, the pool."""

from __future__ import annotations

from typing import Any

import pytest
from support.api_fixtures import RunningApi
from support.api_helpers import (
    FINAL_STATES,
    assert_well_formed,
    client_of,
    create_openai_source,
    create_workflow,
    eventually,
    struct,
)
from support.grafana import queries as dashboard_queries
from support.prometheus_fixtures import Prometheus
from support.runs import answer_spec

from agentflow_grpc._gen.agentflow.v1 import execution_pb2 as ex
from agentflow_grpc.observability.exposition import MetricsServer
from agentflow_grpc.testing import FakeProviderServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

EXECUTE = "/agentflow.v1.ExecutionService/ExecuteWorkflow"
DELAY = 0.15  # seconds the fake provider takes over each successful chat call


async def test_prometheus_answers_promql_about_runs_made_through_the_api(
    api: RunningApi,
    provider: FakeProviderServer,
    metrics_server: MetricsServer,
    prometheus: Prometheus,
) -> None:
    provider.add_rule(contains="refuse", status=400, message="no, thanks")
    provider.add_rule(contains="Answer", delay=DELAY)
    md = api.metadata()
    async with api.channel() as channel:
        client = client_of(channel)
        await create_openai_source(client, md, f"{provider.url}/v1")
        workflow = await create_workflow(client, md, answer_spec())

        async def execute(**request: Any) -> str:
            call = client.executions.ExecuteWorkflow(
                ex.ExecuteWorkflowRequest(inputs=struct({"question": "why?"}), **request),
                metadata=md,
            )
            events = [event async for event in call]
            assert_well_formed(events)
            return str(events[-1].type)

        for _ in range(3):
            assert await execute(workflow=workflow.name) == "execution_completed"
        refused = answer_spec(prompt="refuse {{ inputs.question }}")
        assert await execute(spec=struct(refused)) == "execution_failed"
        queued = await client.executions.StartExecution(
            ex.StartExecutionRequest(workflow=workflow.name, inputs=struct({"question": "q"})),
            metadata=md,
        )

        async def finished() -> bool:
            got = await client.executions.GetExecution(
                ex.GetExecutionRequest(name=queued.name), metadata=md
            )
            return got.state in FINAL_STATES

        await eventually(finished, timeout=30)

    # The target is up, and a scrape after the runs ended holds all five.
    assert await prometheus.wait_for('up{job="agentflow"}', 1) == 1
    await prometheus.wait_for("sum(agentflow_executions_total)", 5)
    completed = 'agentflow_executions_total{job="agentflow",status="completed"}'
    assert await prometheus.value(completed) == 4
    assert await prometheus.value('agentflow_executions_total{status="failed"}') == 1
    assert await prometheus.value('agentflow_executions_total{status="cancelled"}') == 0
    durations = await prometheus.query("agentflow_execution_duration_seconds_count")
    assert {s.labels["status"]: s.value for s in durations} == {
        "completed": 4,
        "failed": 1,
        "cancelled": 0,
    }
    assert await prometheus.value("agentflow_executions_running") == 0

    # Every llm attempt took the provider's delay: the median is in the (0.1, 0.25] bucket,
    # interpolated by histogram_quantile.
    llm = 'node_type="llm",status="completed"'
    assert await prometheus.value(f"sum(agentflow_node_duration_seconds_count{{{llm}}})") == 4
    median = await prometheus.value(
        f"histogram_quantile(0.5, sum by (le) (agentflow_node_duration_seconds_bucket{{{llm}}}))"
    )
    assert median is not None
    assert 0.1 < median <= 0.25
    assert (
        await prometheus.value(
            'sum(agentflow_node_duration_seconds_count{node_type="llm",status="failed"})'
        )
        == 1
    )
    assert (
        await prometheus.value('sum(agentflow_node_duration_seconds_count{node_type="input"})') == 5
    )

    # The calls: four streamed runs answered OK (a failed run still streams to its end).
    await prometheus.wait_for(f'agentflow_rpc_requests_total{{method="{EXECUTE}",code="OK"}}', 4)
    assert (
        await prometheus.value(f'agentflow_rpc_duration_seconds_count{{method="{EXECUTE}"}}') == 4
    )

    # The LLM calls, by the GenAI conventions: four answered, one refused with HTTP 400.
    genai = 'gen_ai_operation_name="chat",gen_ai_provider_name="openai"'
    model = 'gen_ai_request_model="fake-model"'
    duration = f"gen_ai_client_operation_duration_seconds_count{{{genai},{model}"
    calls = await prometheus.query(duration + "}")
    assert {s.labels.get("error_type", ""): s.value for s in calls} == {"": 4, "400": 1}
    assert await prometheus.value(duration + ',error_type="400"}') == 1
    tokens = f'gen_ai_client_token_usage_count{{{genai},{model},gen_ai_token_type="output"}}'
    assert await prometheus.value(tokens) == 4
    first_chunk = f"gen_ai_client_operation_time_to_first_chunk_seconds_count{{{model}}}"
    assert await prometheus.value(first_chunk) == 4

    # The queued run waited once; the database pool is reported as set up.
    assert await prometheus.value("agentflow_queue_wait_seconds_count") == 1
    assert await prometheus.value("agentflow_db_pool_max_connections") == (
        api.server.app.settings.database_pool_max
    )
    assert (await prometheus.value("sum(agentflow_event_log_events_total)") or 0) >= 5 * 6

    # Every query of the Grafana dashboard (docs/grafana/) is valid PromQL for this Prometheus,
    # and its executions panel shows the runs.
    for expr in dashboard_queries():
        await prometheus.query(expr.replace("$__rate_interval", "1m"))
    runs_by_status = dashboard_queries()[0].replace("$__rate_interval", "1m")

    async def shows_the_runs() -> bool:  # a rate needs two scrapes that hold the series
        samples = await prometheus.query(runs_by_status)
        return {sample.labels["status"] for sample in samples} >= {"completed", "failed"}

    await eventually(shows_the_runs, timeout=30)
