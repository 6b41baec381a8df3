"""GET /v1/stats through Envoy: the JSON the dashboard reads (field names as in the proto,
durations as "60s", 64-bit integers as strings), the window and bucket count as query
parameters, and a bad one refused with the field named (HTTP 400)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from support.gateway_fixtures import RunningGateway
from support.rest import api_error, field_violations
from support.runs import answer_spec

from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

pytestmark = pytest.mark.slow


async def run(runner: httpx.AsyncClient, question: str) -> None:
    response = await runner.post(
        "/v1/executions:execute",
        json={"spec": answer_spec(), "inputs": {"question": question}},
        headers={"accept": "text/event-stream"},
    )
    assert response.status_code == 200, response.text


async def test_stats_over_rest(
    runner: httpx.AsyncClient, gateway: RunningGateway, provider: FakeProviderServer
) -> None:
    provider.add_rule(contains="[refuse]", status=400, message="no")
    for question in ("a", "b", "[refuse] c"):
        await run(runner, question)

    async with gateway.client(Role.VIEWER) as viewer:
        response = await viewer.get("/v1/stats", params={"window": "3600s", "bucketCount": 30})
    assert response.status_code == 200, response.text
    stats = response.json()

    assert stats["bucket_width"] == "120s"
    assert len(stats["buckets"]) == 30
    start = datetime.fromisoformat(stats["start_time"])
    end = datetime.fromisoformat(stats["end_time"])
    assert end - start == timedelta(hours=1)
    assert start <= datetime.now(UTC) - timedelta(minutes=58)
    assert (stats["total_executions"], stats["completed_executions"]) == ("3", "2")
    assert stats["failed_executions"] == "1"
    assert stats["error_rate"] == pytest.approx(1 / 3)
    assert sum(int(b["completed"]) + int(b["failed"]) for b in stats["buckets"]) == 3
    [model] = stats["models"]
    assert (model["provider"], model["model"], model["calls"]) == ("openai", "fake-model", "2")
    assert model["price_known"] is False
    [failure] = stats["recent_failures"]
    assert failure["name"].startswith("executions/")
    assert failure["error_code"] == "provider.rejected"
    assert {d["name"]: d["status"] for d in stats["dependencies"]} == {
        "database": "SERVING",
        "redis": "SERVING",
    }
    assert stats["queue_depth"] == "0"
    assert [group["code"] for group in stats["top_error_groups"]] == ["provider.rejected"]

    # The proto's field names work as query parameters too; nothing given: the defaults.
    default = (await runner.get("/v1/stats")).json()
    assert (len(default["buckets"]), default["bucket_width"]) == (60, "60s")
    assert len((await runner.get("/v1/stats?bucket_count=12")).json()["buckets"]) == 12


@pytest.mark.parametrize(
    ("query", "field"),
    [("window=0s", "window"), ("window=700000s", "window"), ("bucketCount=500", "bucket_count")],
)
async def test_bad_parameters_are_a_400_naming_the_field(
    runner: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await runner.get(f"/v1/stats?{query}")
    body = api_error(response, 400, 3, "invalid_argument")
    assert field in [name for name, _ in field_violations(body)]


async def test_without_a_key_it_is_refused(gateway: RunningGateway) -> None:
    async with gateway.client(None) as anonymous:
        response = await anonymous.get("/v1/stats")
    assert response.status_code == 401
