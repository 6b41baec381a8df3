"""The dashboard view (`#/dashboard`) in headless Chromium, served by Envoy: after a mix of runs
made through the API, its tiles and chart bars show what GetStats (`GET /v1/stats`) answers, its
tables the models, dependencies, error groups and failures; a recent failure leads to its run's
view. Screenshots: test-output/browser/dashboard*.png, dashboard-run.png."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from support.api_helpers import Client, client_of
from support.browser import screenshot_dir
from support.gateway_fixtures import RunningGateway
from support.stats import (
    PRICED_MODEL,
    REFUSE,
    UNPRICED_MODEL,
    cancel,
    execute,
    prepare,
    script_provider,
    start_slow,
)

from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CHART_HEIGHT = 202  # the plot's height in the chart's viewBox (views/stats-chart.js)
STATES = ("completed", "failed", "cancelled", "active")


@pytest.fixture
async def grpc_client(gateway: RunningGateway) -> AsyncIterator[Client]:
    async with gateway.api.channel() as channel:
        yield client_of(channel)


@pytest.fixture
async def runs(grpc_client: Client, gateway: RunningGateway, provider: FakeProviderServer) -> None:
    """Tenant acme: 3 completed (2 on gpt-4o-mini, 1 on fake-model), 2 failed, 1 cancelled and
    1 still running, made over gRPC behind the same Envoy."""
    md = gateway.api.metadata(Role.ADMIN)
    script_provider(provider)
    workflows = await prepare(grpc_client, md, provider)
    for question in ("one", "two"):
        await execute(grpc_client, md, question, workflow=workflows.priced)
    await execute(grpc_client, md, "three", workflow=workflows.unpriced)
    for question in ("first", "second"):
        await execute(grpc_client, md, f"{REFUSE} {question}", workflow=workflows.priced)
    await cancel(grpc_client, md, await start_slow(grpc_client, md, workflows.priced))
    await start_slow(grpc_client, md, workflows.priced)


async def rest_stats(gateway: RunningGateway, window: str, buckets: int) -> dict[str, Any]:
    async with gateway.client(Role.VIEWER) as http:
        response = await http.get("/v1/stats", params={"window": window, "bucketCount": buckets})
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


async def drawn_buckets(page: Page) -> list[dict[str, Any]]:
    return list(
        await page.get_by_test_id("chart-bucket").evaluate_all(
            """groups => groups.map((g) => ({
                start: g.dataset.start,
                counts: Object.fromEntries(['completed', 'failed', 'cancelled', 'active']
                    .map((s) => [s, Number(g.dataset[s])])),
                heights: Object.fromEntries([...g.querySelectorAll('rect.bar')]
                    .map((r) => [r.dataset.state, Number(r.getAttribute('height'))])),
            }))"""
        )
    )


@pytest.mark.usefixtures("runs")
async def test_the_dashboard_shows_get_stats_and_leads_to_a_failed_run(
    gateway: RunningGateway, page: Page, repo_root: Path
) -> None:
    await page.goto(f"{gateway.url}/#api_key={gateway.api.keys[Role.VIEWER]}")
    await page.get_by_test_id("nav-dashboard").click()
    await expect(page).to_have_url(f"{gateway.url}/#/dashboard")
    await expect(page.get_by_test_id("nav-dashboard")).to_have_attribute("aria-current", "page")
    await expect(page.get_by_test_id("tile-runs")).to_have_attribute("data-value", "7")
    stats = await rest_stats(gateway, "3600s", 60)
    assert stats["total_executions"] == "7"

    # The tiles: GetStats's numbers.
    tiles = {
        "runs": stats["total_executions"],
        "error-rate": stats["error_rate"],
        "p50": stats["p50_duration_ms"],
        "p95": stats["p95_duration_ms"],
        "cost": stats["estimated_cost_usd"],
        "queue": stats["queue_depth"],
    }
    for name, value in tiles.items():
        shown = await page.get_by_test_id(f"tile-{name}").get_attribute("data-value")
        assert float(shown or "nan") == pytest.approx(float(value)), name
    assert float(stats["error_rate"]) == pytest.approx(2 / 6)
    await expect(page.get_by_test_id("tile-error-rate").get_by_test_id("tile-value")).to_have_text(
        "33.3%"
    )
    await expect(page.get_by_test_id("tile-queue").get_by_test_id("tile-value")).to_have_text("0")
    assert float(stats["estimated_cost_usd"]) > 0
    cost_text = await page.get_by_test_id("tile-cost").get_by_test_id("tile-value").text_content()
    assert re.fullmatch(r"\$0\.\d+", cost_text or ""), cost_text

    # The chart: one group per bucket, counts as GetStats has them, bars in proportion.
    chart = page.get_by_test_id("stats-chart")
    await expect(chart).to_have_attribute(
        "aria-label", re.compile(r"7 runs, 3 completed, 2 failed")
    )
    drawn = await drawn_buckets(page)
    assert len(drawn) == len(stats["buckets"]) == 60
    for bar, bucket in zip(drawn, stats["buckets"], strict=True):
        assert bar["start"] == bucket["start_time"]
        assert bar["counts"] == {state: int(bucket[state]) for state in STATES}
    scale = CHART_HEIGHT / float(await chart.get_attribute("data-max") or "nan")
    heights = [(bar["counts"][s], bar["heights"].get(s, 0)) for bar in drawn for s in STATES]
    assert sum(count for count, _ in heights) == 7
    for count, height in heights:
        assert height == pytest.approx(count * scale, abs=0.02)

    # The tables.
    models = page.get_by_test_id("model-row")
    await expect(models).to_have_count(2)
    priced = page.locator(f'[data-testid="model-row"][data-model="{PRICED_MODEL}"]')
    await expect(priced.get_by_test_id("model-cost")).to_have_text(re.compile(r"^\$0\.\d+$"))
    unpriced = page.locator(f'[data-testid="model-row"][data-model="{UNPRICED_MODEL}"]')
    await expect(unpriced.get_by_test_id("model-cost")).to_have_text("no price")
    for name in ("database", "redis"):
        dependency = page.locator(f'[data-testid="dashboard-dependency"][data-name="{name}"]')
        await expect(dependency).to_have_attribute("data-status", "SERVING")
    await expect(page.get_by_test_id("error-group-row")).to_have_count(1)
    await expect(page.get_by_test_id("error-group-row")).to_have_attribute(
        "data-code", "provider.rejected"
    )
    failures = page.get_by_test_id("recent-failure")
    await expect(failures).to_have_count(2)
    names = [failure["name"] for failure in stats["recent_failures"]]
    assert await failures.evaluate_all("rows => rows.map((r) => r.dataset.name)") == names

    folder = screenshot_dir(repo_root)
    await page.screenshot(path=str(folder / "dashboard.png"), full_page=True)
    assert (folder / "dashboard.png").stat().st_size > 10_000

    # Another window: 15 minutes in 30 buckets.
    await page.get_by_test_id("dashboard-window").select_option(label="15 min")
    await expect(page.get_by_test_id("chart-bucket")).to_have_count(30)
    await expect(page.get_by_test_id("tile-runs")).to_have_attribute("data-value", "7")
    await page.screenshot(path=str(folder / "dashboard-15min.png"), full_page=True)

    # A recent failure leads to its run.
    await failures.first.get_by_test_id("recent-failure-link").click()
    execution_id = names[0].removeprefix("executions/")
    await expect(page).to_have_url(f"{gateway.url}/#/executions/{execution_id}")
    view = page.get_by_test_id("execution-view")
    await expect(view.get_by_test_id("execution-state")).to_have_text("failed")
    await expect(view.get_by_test_id("execution-name")).to_have_text(names[0])
    await expect(view.get_by_test_id("execution-error")).to_contain_text("provider.rejected")
    await expect(view.get_by_test_id("execution-error")).to_contain_text("refuses this prompt")
    reply = view.locator('[data-testid="execution-node"][data-node-id="reply"]')
    await expect(reply).to_have_attribute("data-status", "failed")
    await expect(page.get_by_test_id("dashboard")).to_be_hidden()
    await page.screenshot(path=str(folder / "dashboard-run.png"), full_page=True)

    # And back.
    await page.go_back()
    await expect(page.get_by_test_id("dashboard")).to_be_visible()
    await expect(page.get_by_test_id("tile-runs")).to_have_attribute("data-value", "7")


async def test_the_dashboard_asks_for_a_key_and_refreshes_by_itself(
    gateway: RunningGateway, grpc_client: Client, page: Page
) -> None:
    await page.goto(f"{gateway.url}/#/dashboard")
    await expect(page.get_by_test_id("dashboard-message")).to_contain_text("API key")

    await page.get_by_test_id("api-key-input").fill(gateway.api.keys[Role.VIEWER])
    await page.get_by_test_id("api-key-save").click()
    await expect(page.get_by_test_id("tile-runs")).to_have_attribute("data-value", "0")
    await expect(page.get_by_test_id("dashboard-message")).to_be_hidden()

    # A run made elsewhere shows up without a reload (the view reads GetStats every 5 s).
    md = gateway.api.metadata(Role.RUNNER)
    echo = {
        "api_version": "agentflow/v1",
        "name": "echo",
        "inputs": {"n": {"type": "integer", "default": 1}},
        "outputs": {"n": {"from": "nodes.start.output.n"}},
        "nodes": [{"id": "start", "type": "input"}],
        "edges": [],
    }
    assert await execute(grpc_client, md, None, spec=echo, inputs={}) == "execution_completed"
    await expect(page.get_by_test_id("tile-runs")).to_have_attribute(
        "data-value", "1", timeout=15_000
    )
    buckets = page.locator('[data-testid="chart-bucket"][data-completed="1"]')
    await expect(buckets).to_have_count(1)
