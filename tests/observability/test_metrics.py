"""The Prometheus metrics (observability/metrics.py) and their endpoint (exposition.py), in
process: every documented name with its labels, registries apart, values read at scrape time,
`/metrics` over HTTP; and the recording points that need no server: node attempts, LLM calls
(against the fake provider), the validation cache. Redis-backed ones (caches, the queue's depth)
run against the session's Valkey at the end."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import RedisError
from support.network import closed_port
from support.runs import answer_spec
from support.sources import llm_source

from agentflow_grpc.caching.llm_responses import RedisResponseCache
from agentflow_grpc.caching.workflows import WorkflowVersionCache
from agentflow_grpc.cli.serve import serve_metrics
from agentflow_grpc.compiler.attempts import NodeExecutionError, run_attempts
from agentflow_grpc.config import Settings
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.model.events import NodeEvent, ProviderCall
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.nodes.base import NodeResult
from agentflow_grpc.nodes.response_cache import CachedReply
from agentflow_grpc.observability import metric_names
from agentflow_grpc.observability import metrics as metrics_module
from agentflow_grpc.observability.exposition import MetricsServer
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.queue.jobs import Job, JobQueue
from agentflow_grpc.services.validations import SpecValidations
from agentflow_grpc.sources.base import ChatRequest
from agentflow_grpc.sources.openai_adapters import adapters
from agentflow_grpc.sources.openai_compatible import OpenAICompatibleSource
from agentflow_grpc.spec import Limits, PluginCatalog
from agentflow_grpc.spec.base import RetryPolicy
from agentflow_grpc.testing import FakeProviderServer

# Every family the docs promise, with its labels (histograms: without `le`).
DOCUMENTED = {
    "agentflow_rpc_requests": {"method", "code"},
    "agentflow_rpc_duration_seconds": {"method"},
    "agentflow_executions": {"status"},
    "agentflow_execution_duration_seconds": {"status"},
    "agentflow_executions_running": set(),
    "agentflow_queue_depth": {"state"},
    "agentflow_queue_wait_seconds": set(),
    "agentflow_node_duration_seconds": {"node_type", "status"},
    "agentflow_event_log_append_seconds": set(),
    "agentflow_event_log_events": set(),
    "agentflow_db_pool_connections": {"state"},
    "agentflow_db_pool_max_connections": set(),
    "agentflow_rate_limit_refusals": {"scope"},
    "agentflow_cache_requests": {"cache", "result"},
    "gen_ai_client_token_usage": {
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_token_type",
    },
    "gen_ai_client_operation_duration_seconds": {
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "error_type",
    },
    "gen_ai_client_operation_time_to_first_chunk_seconds": {
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
    },
}


def families(text: str) -> dict[str, tuple[str, set[str]]]:
    """Family name → (type, the label names its samples carry, `le` aside)."""
    found = {}
    for family in text_string_to_metric_families(text):
        labels = {name for sample in family.samples for name in sample.labels} - {"le"}
        found[family.name] = (family.type, labels)
    return found


def record_one_of_each(metrics: Metrics) -> None:
    metrics.rpc("/agentflow.v1.WorkflowService/GetWorkflow").done("OK", 0.002)
    metrics.execution_started()
    metrics.execution_ran("completed", 1.5)
    metrics.queue_waited(0.3)
    metrics.node_attempt("llm", "completed", 0.2)
    metrics.event_log_appended(7, 0.004)
    metrics.limit_refused("tenant_requests")
    metrics.cache("llm_responses").hit()
    calls = metrics.chat_calls("openai", "gpt-4o-mini")
    calls.first_chunk(0.1)
    calls.succeeded(0.5)
    calls.used_tokens(12, 30)
    calls.failed(0.2, "429")


async def exposition(metrics: Metrics) -> str:
    body, _ = await metrics.exposition()
    return body.decode()


async def test_the_exposition_holds_every_documented_name_with_its_labels() -> None:
    metrics = Metrics()
    record_one_of_each(metrics)
    metrics.watch_database_pool(lambda: (3, 2, 10))

    async def depth() -> tuple[int, int]:
        return 4, 1

    metrics.watch_queue(depth)
    found = families(await exposition(metrics))

    assert {name: labels for name, (_, labels) in found.items() if name in DOCUMENTED} == (
        DOCUMENTED
    )
    kinds = {name: kind for name, (kind, _) in found.items()}
    assert kinds["agentflow_rpc_requests"] == "counter"
    assert kinds["agentflow_executions_running"] == "gauge"
    assert kinds["agentflow_node_duration_seconds"] == "histogram"
    assert kinds["gen_ai_client_token_usage"] == "histogram"
    assert {"process_cpu_seconds", "python_info"} <= set(found)  # the standard families too


async def test_the_values_and_fixed_labels_as_scraped() -> None:
    metrics = Metrics()
    record_one_of_each(metrics)
    text = await exposition(metrics)
    sample = metrics.registry.get_sample_value
    method = "/agentflow.v1.WorkflowService/GetWorkflow"
    assert sample("agentflow_rpc_requests_total", {"method": method, "code": "OK"}) == 1
    assert sample("agentflow_executions_running") == 1
    assert sample("agentflow_executions_total", {"status": "completed"}) == 1
    assert sample("agentflow_executions_total", {"status": "failed"}) == 0  # bound up front
    assert sample("agentflow_event_log_events_total") == 7
    assert sample("agentflow_rate_limit_refusals_total", {"scope": "source_calls"}) == 0
    llm = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
    }
    assert sample("gen_ai_client_token_usage_sum", {**llm, "gen_ai_token_type": "input"}) == 12
    assert sample("gen_ai_client_token_usage_sum", {**llm, "gen_ai_token_type": "output"}) == 30
    assert sample("gen_ai_client_operation_duration_seconds_count", {**llm, "error_type": ""}) == 1
    failed = {**llm, "error_type": "429"}
    assert sample("gen_ai_client_operation_duration_seconds_count", failed) == 1
    # The GenAI histograms have the semantic conventions' buckets.
    assert 'gen_ai_client_token_usage_bucket{gen_ai_operation_name="chat"' in text
    assert re.search(r'gen_ai_client_operation_duration_seconds_bucket\{.*le="81\.92"', text)
    assert re.search(r'gen_ai_client_token_usage_bucket\{.*le="6\.7108864e\+07"', text)
    # A success has no error_type: an empty label, which PromQL reads as none.
    assert 'error_type=""' in text


def test_the_docs_list_every_metric(repo_root: Path) -> None:
    docs = (repo_root / "docs" / "observability.md").read_text()
    listed = set(re.findall(r"^\| `((?:agentflow|gen_ai)_[a-z_]+)` \|", docs, flags=re.MULTILINE))
    names = {
        getattr(metric_names, constant)
        for constant in dir(metric_names)
        if constant.isupper()
        and isinstance(getattr(metric_names, constant), str)
        and getattr(metric_names, constant).startswith(("agentflow_", "gen_ai_"))
    }
    assert listed == names
    for scope in metric_names.LIMIT_SCOPES:
        assert f"| `{scope}` |" in docs
    for cache in metric_names.CACHES:
        assert f"`{cache}`" in docs


async def test_apps_in_one_process_keep_their_own_registries() -> None:
    first, second = Metrics(), Metrics()
    first.execution_ran("failed", 0.1)
    assert first.registry.get_sample_value("agentflow_executions_total", {"status": "failed"}) == 1
    assert second.registry.get_sample_value("agentflow_executions_total", {"status": "failed"}) == 0


async def test_the_pool_is_read_at_each_scrape() -> None:
    metrics = Metrics()
    use = [(1, 4, 10)]
    metrics.watch_database_pool(lambda: use[0])
    assert 'agentflow_db_pool_connections{state="in_use"} 1.0' in await exposition(metrics)
    use[0] = (7, 0, 10)
    text = await exposition(metrics)
    assert 'agentflow_db_pool_connections{state="in_use"} 7.0' in text
    assert 'agentflow_db_pool_connections{state="idle"} 0.0' in text
    assert "agentflow_db_pool_max_connections 10.0" in text


async def test_a_queue_that_cannot_be_read_is_left_out_of_that_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_module, "QUEUE_READ_TIMEOUT", 0.05)
    metrics = Metrics()
    replies: list[Callable[[], Awaitable[tuple[int, int]]]] = []

    async def depth() -> tuple[int, int]:
        return await replies[0]()

    async def answers() -> tuple[int, int]:
        return 2, 3

    async def fails() -> tuple[int, int]:
        raise ConnectionError("Redis is down")

    async def hangs() -> tuple[int, int]:
        await asyncio.sleep(10)
        return 0, 0

    metrics.watch_queue(depth)
    replies[:] = [answers]
    text = await exposition(metrics)
    assert 'agentflow_queue_depth{state="waiting"} 2.0' in text
    assert 'agentflow_queue_depth{state="claimed"} 3.0' in text
    for broken in (fails, hangs):
        replies[:] = [broken]
        assert "agentflow_queue_depth{" not in await exposition(metrics)  # no stale values
    replies[:] = [answers]
    assert 'agentflow_queue_depth{state="waiting"} 2.0' in await exposition(metrics)


# --- /metrics over HTTP ---


async def test_the_endpoint_serves_the_text_format_and_openmetrics_on_request() -> None:
    metrics = Metrics()
    metrics.execution_ran("completed", 0.4)
    server = await MetricsServer.start(metrics, host="127.0.0.1", port=0)
    try:
        assert server.url == f"http://{server.address}/metrics"
        async with httpx.AsyncClient(timeout=5) as http:
            text = await http.get(server.url)
            assert text.status_code == 200
            assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert 'agentflow_executions_total{status="completed"} 1.0' in text.text
            open_metrics = await http.get(
                server.url, headers={"accept": "application/openmetrics-text; version=1.0.0"}
            )
            assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
            assert open_metrics.text.endswith("# EOF\n")
            head = await http.head(server.url)
            assert head.status_code == 200
            assert head.content == b""
            assert (await http.get(f"http://{server.address}/")).status_code == 404
            assert (await http.post(server.url)).status_code == 405
    finally:
        await server.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(timeout=5) as http:
            await http.get(server.url)


async def test_a_port_in_use_is_an_error_naming_it() -> None:
    first = await MetricsServer.start(Metrics(), host="127.0.0.1", port=0)
    try:
        port = first.address.rpartition(":")[2]
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await MetricsServer.start(Metrics(), host="127.0.0.1", port=int(port))
    finally:
        await first.stop()


async def test_a_client_that_sends_nothing_does_not_hold_up_others() -> None:
    server = await MetricsServer.start(Metrics(), host="127.0.0.1", port=0)
    host, _, port = server.address.rpartition(":")
    try:
        _, silent = await asyncio.open_connection(host, int(port))  # sends no request
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(server.url)).status_code == 200
        silent.close()
    finally:
        await server.stop()


# --- where the run's parts record ---


async def test_node_attempts_are_recorded_by_type_and_how_they_ended() -> None:
    metrics = Metrics()
    events: list[NodeEvent] = []
    retry = RetryPolicy.model_validate(
        {"max_attempts": 2, "backoff": {"initial": 0.01, "max": 0.01}}
    )

    async def quick(number: int, calls: list[ProviderCall]) -> NodeResult:
        return NodeResult({"ok": True})

    async def refuses(number: int, calls: list[ProviderCall]) -> NodeResult:
        raise NodeFailure("provider.rejected", "no")

    async def slow(number: int, calls: list[ProviderCall]) -> NodeResult:
        await asyncio.sleep(5)
        return NodeResult(None)

    await run_attempts("a", "router", None, 5, quick, events.append, metrics)
    with pytest.raises(NodeExecutionError):
        await run_attempts("b", "llm", None, 5, refuses, events.append, metrics)
    with pytest.raises(NodeExecutionError):  # timed out twice: retried once
        await run_attempts("c", "http", retry, 0.02, slow, events.append, metrics)
    running = asyncio.create_task(run_attempts("d", "llm", None, 5, slow, events.append, metrics))
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    def count(node_type: str, status: str) -> float | None:
        return metrics.registry.get_sample_value(
            "agentflow_node_duration_seconds_count", {"node_type": node_type, "status": status}
        )

    assert count("router", "completed") == 1
    assert count("llm", "failed") == 1
    assert count("http", "timed_out") == 2
    assert count("llm", "cancelled") == 1
    assert count("llm", "completed") is None  # bound when first seen


async def test_llm_calls_record_the_genai_metrics(provider: FakeProviderServer) -> None:
    metrics = Metrics()
    (adapter,) = [a for a in adapters(metrics) if a.type_name == "openai"]
    source = adapter.open(llm_source("llm", "openai", provider.url))
    assert isinstance(source, OpenAICompatibleSource)
    messages = [{"role": "user", "content": "Say hello"}]
    try:
        await source.chat(ChatRequest(messages), lambda text: None)  # streamed
        await source.chat(ChatRequest(messages, stream=False), lambda text: None)
        await source.chat(ChatRequest(messages, model="named-by-a-node"), lambda text: None)
        provider.add_rule(contains="fail", status=429, message="slow down")
        with pytest.raises(NodeFailure):
            await source.chat(ChatRequest([{"role": "user", "content": "fail"}]), print)
    finally:
        await source.aclose()

    def sample(name: str, model: str = "fake-model", **labels: str) -> float | None:
        base = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai"}
        return metrics.registry.get_sample_value(
            name, {**base, "gen_ai_request_model": model, **labels}
        )

    duration = "gen_ai_client_operation_duration_seconds_count"
    first_chunk = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    assert sample(duration, error_type="") == 2
    assert sample(duration, error_type="429") == 1
    assert sample(first_chunk) == 1  # streamed calls that got a chunk (not the refused one)
    assert sample(duration, "_OTHER", error_type="") == 1  # a model only the node names
    assert sample(first_chunk, "_OTHER") == 1
    assert sample("gen_ai_client_token_usage_count", gen_ai_token_type="input") == 2
    assert sample("gen_ai_client_token_usage_count", gen_ai_token_type="output") == 2
    assert (sample("gen_ai_client_token_usage_sum", gen_ai_token_type="output") or 0) > 0


def test_the_validation_cache_counts_hits_and_misses() -> None:
    metrics = Metrics()
    validations = SpecValidations(plugins=PluginCatalog(), limits=Limits(), metrics=metrics)
    sources = {"openai-main": "openai"}
    for _ in range(3):
        assert validations.validate(answer_spec(), sources).ok
    assert not validations.validate({"name": "broken"}, sources).ok

    def lookups(result: str) -> float | None:
        return metrics.registry.get_sample_value(
            "agentflow_cache_requests_total", {"cache": "spec_validations", "result": result}
        )

    assert (lookups("hit"), lookups("miss")) == (2, 2)


# --- against the session's Valkey ---


async def test_the_redis_caches_count_hits_misses_and_errors(valkey: redis.Redis) -> None:
    metrics = Metrics()
    keys = RedisKeys(f"test-{uuid.uuid4().hex[:12]}")
    replies = RedisResponseCache(valkey, keys=keys, metrics=metrics)
    assert await replies.get("tenant", "k") is None
    await replies.put("tenant", "k", CachedReply("hi", "m", "stop", None), ttl=60)
    assert await replies.get("tenant", "k") is not None
    versions = WorkflowVersionCache(valkey, keys=keys, metrics=metrics)
    tenant, workflow = uuid.uuid4(), uuid.uuid4()
    assert await versions.current(tenant, workflow) is None
    await versions.remember(tenant, workflow, 3, {"name": "x"}, current=True)
    assert await versions.current(tenant, workflow) == 3
    assert await versions.spec(tenant, workflow, 3) == {"name": "x"}
    down = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}", socket_connect_timeout=1)
    try:
        unreachable = WorkflowVersionCache(down, keys=keys, metrics=metrics)
        assert await unreachable.spec(tenant, workflow, 3) is None  # a miss to the caller
        with pytest.raises(RedisError):  # the node takes it as a miss
            await RedisResponseCache(down, keys=keys, metrics=metrics).get("tenant", "k")
    finally:
        await down.aclose()

    def lookups(cache: str) -> tuple[float | None, ...]:
        return tuple(
            metrics.registry.get_sample_value(
                "agentflow_cache_requests_total", {"cache": cache, "result": result}
            )
            for result in ("hit", "miss", "error")
        )

    assert lookups("llm_responses") == (1, 1, 1)
    assert lookups("workflow_current") == (1, 1, 0)
    assert lookups("workflow_versions") == (1, 0, 1)


async def test_the_queue_depth_counts_waiting_and_claimed_jobs(valkey: redis.Redis) -> None:
    queue = JobQueue(
        valkey,
        RedisKeys(f"test-{uuid.uuid4().hex[:12]}"),
        consumer="test",
        visibility_timeout=30,
    )
    assert await queue.depth() == (0, 0)  # no stream yet
    for _ in range(3):
        await queue.enqueue(Job(uuid.uuid4(), uuid.uuid4()))
    assert await queue.depth() == (3, 0)
    claimed = await queue.claim(block=0.1)
    assert claimed is not None
    assert await queue.depth() == (2, 1)
    await queue.ack(claimed)
    assert await queue.depth() == (2, 0)


async def test_serve_and_dev_serve_metrics_unless_the_port_is_minus_one() -> None:
    off = SimpleNamespace(settings=Settings(metrics_port=-1), metrics=Metrics())
    async with serve_metrics(off) as server:  # type: ignore[arg-type]
        assert server is None
    on = SimpleNamespace(
        settings=Settings(metrics_host="127.0.0.1", metrics_port=0), metrics=Metrics()
    )
    async with serve_metrics(on) as server:  # type: ignore[arg-type]
        assert server is not None
        assert server.address.startswith("127.0.0.1:")
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(server.url)).status_code == 200
