"""The browser page, in headless Chromium (Debian's, installed by `make test`), driven by
Playwright: served by Envoy, it uses only the public REST/SSE API with an API key.

The screenshot of the finished run is saved under the test run's output:
`test-output/browser/` (or `$AGENTFLOW_TEST_OUTPUT/browser/`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect
from support.browser import screenshot_dir
from support.gateway_fixtures import RunningGateway
from support.rest import create_openai_source, create_workflow
from support.runs import answer_spec

from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

REPLY = "Refunds take five days."

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def _prepare(gateway: RunningGateway, provider: FakeProviderServer) -> dict[str, Any]:
    """An `openai-main` source on the fake provider and the `answer` workflow, made over REST."""
    provider.add_rule(reply=REPLY, chunk_delay=0.05)
    async with gateway.client(Role.EDITOR) as http:
        await create_openai_source(http, provider)
        return await create_workflow(http, answer_spec())


async def test_the_page_lists_workflows_shows_the_graph_and_runs_one_live(
    gateway: RunningGateway, provider: FakeProviderServer, page: Page, repo_root: Path
) -> None:
    workflow = await _prepare(gateway, provider)
    key = gateway.api.keys[Role.RUNNER]

    await page.goto(f"{gateway.url}/#api_key={key}")
    # The key is taken from the fragment and the fragment dropped from the address bar.
    await expect(page).to_have_url(f"{gateway.url}/")

    # Health panel: server, database, redis, version.
    await expect(page.get_by_test_id("health-status")).to_have_text("SERVING")
    await expect(page.get_by_test_id("health-version")).to_contain_text("0.1.0")
    for name in ("database", "redis"):
        dependency = page.locator(f'[data-testid="health-dependency"][data-name="{name}"]')
        await expect(dependency).to_have_attribute("data-status", "SERVING")

    # The list, then the workflow's graph.
    item = page.locator(f'[data-testid="workflow-item"][data-name="{workflow["name"]}"]')
    await expect(item).to_contain_text("answer")
    await item.click()
    graph = page.get_by_test_id("workflow-graph")
    await expect(graph.get_by_test_id("graph-node")).to_have_count(2)
    for node_id in ("start", "reply"):
        await expect(graph.locator(f'[data-node-id="{node_id}"]')).to_be_visible()

    # Run with inputs; watch it live.
    await page.locator('[data-testid="run-input"][data-input="question"]').fill("How long?")
    await page.get_by_test_id("run-button").click()
    await expect(page.get_by_test_id("run-state")).to_have_text("completed", timeout=30_000)

    reply = page.locator('[data-testid="node-row"][data-node-id="reply"]')
    await expect(reply).to_have_attribute("data-status", "completed")
    await expect(reply.get_by_test_id("node-tokens")).to_have_text(REPLY)
    await expect(reply.get_by_test_id("node-duration")).to_have_text(re.compile(r"\d"))
    await expect(reply.get_by_test_id("node-usage")).to_have_text(re.compile(r"\d"))
    await expect(graph.locator('[data-node-id="reply"]')).to_have_attribute(
        "data-status", "completed"
    )
    outputs = page.get_by_test_id("run-outputs")
    await expect(outputs).to_contain_text(REPLY)
    await expect(page.get_by_test_id("event-log")).to_contain_text("execution_completed")

    # What the page showed is what the API recorded.
    assert provider.requests[-1].body["messages"][-1]["content"] == "Answer: How long?"
    async with gateway.client(Role.VIEWER) as http:
        listed = (await http.get("/v1/executions")).json()["executions"]
    assert [e["state"] for e in listed] == ["STATE_COMPLETED"]
    assert listed[0]["outputs"] == {"answer": REPLY}

    path = screenshot_dir(repo_root) / "run-viewer.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


async def test_the_page_shows_api_errors_and_a_failed_run(
    gateway: RunningGateway,
    provider: FakeProviderServer,
    page: Page,
    repo_root: Path,
    expected_console_errors: list[re.Pattern[str]],
) -> None:
    expected_console_errors.append(re.compile(r"status of 401 \(Unauthorized\)"))
    await _prepare(gateway, provider)
    provider.reset()
    provider.add_rule(status=400, message="the model refuses this prompt")

    await page.goto(f"{gateway.url}/")
    await page.get_by_test_id("api-key-input").fill("af_not-a-real-key")
    await page.get_by_test_id("api-key-save").click()
    await expect(page.get_by_test_id("error-banner")).to_be_visible()
    await expect(page.get_by_test_id("error-banner")).to_contain_text(re.compile("API key"))

    await page.get_by_test_id("api-key-input").fill(gateway.api.keys[Role.RUNNER])
    await page.get_by_test_id("api-key-save").click()
    await page.get_by_test_id("workflow-item").first.click()
    await page.locator('[data-testid="run-input"][data-input="question"]').fill("Anything")
    await page.get_by_test_id("run-button").click()
    await expect(page.get_by_test_id("run-state")).to_have_text("failed", timeout=30_000)
    await expect(page.get_by_test_id("run-error")).to_contain_text("refuses this prompt")
    reply = page.locator('[data-testid="node-row"][data-node-id="reply"]')
    await expect(reply).to_have_attribute("data-status", "failed")
    await page.screenshot(path=str(screenshot_dir(repo_root) / "failed-run.png"), full_page=True)


def _chain_spec() -> dict[str, Any]:
    """input `start` → llm `quick` → llm `long`, on `openai-main` (prompts the provider's rules
    tell apart)."""
    llm = {"type": "llm", "source": "openai-main"}
    return {
        "api_version": "agentflow/v1",
        "name": "chain",
        "inputs": {"question": {"type": "string"}},
        "outputs": {"answer": {"from": "nodes.long.output.text"}},
        "nodes": [
            {"id": "start", "type": "input"},
            {"id": "quick", **llm, "config": {"prompt": "[quick] {{ inputs.question }}"}},
            {"id": "long", **llm, "config": {"prompt": "[long] {{ nodes.quick.output.text }}"}},
        ],
        "edges": [{"from": "start", "to": "quick"}, {"from": "quick", "to": "long"}],
    }


async def test_a_finished_run_is_drawn_as_a_waterfall_of_its_attempts(
    gateway: RunningGateway, provider: FakeProviderServer, page: Page, repo_root: Path
) -> None:
    provider.add_rule(contains="[quick]", reply="short answer", delay=0.1, chunk_delay=0.02)
    provider.add_rule(contains="[long]", reply="a much longer answer", delay=1.0, chunk_delay=0.05)
    async with gateway.client(Role.EDITOR) as http:
        await create_openai_source(http, provider)
        workflow = await create_workflow(http, _chain_spec())

    await page.goto(f"{gateway.url}/#api_key={gateway.api.keys[Role.RUNNER]}")
    await page.locator(f'[data-testid="workflow-item"][data-name="{workflow["name"]}"]').click()
    await page.locator('[data-testid="run-input"][data-input="question"]').fill("Why?")
    await page.get_by_test_id("run-button").click()
    await expect(page.get_by_test_id("run-state")).to_have_text("completed", timeout=30_000)

    waterfall = page.get_by_test_id("run-waterfall")
    await expect(waterfall).to_be_visible()
    bars = waterfall.get_by_test_id("waterfall-bar")
    await expect(bars).to_have_count(3)  # one per attempt: start, quick, long
    drawn = {
        bar["node"]: bar
        for bar in await bars.evaluate_all(
            """bars => bars.map((g) => {
                const box = g.querySelector('.wf-bar').getBoundingClientRect();
                const shade = g.querySelector('.wf-provider')?.getBoundingClientRect();
                return {
                    node: g.dataset.nodeId, status: g.dataset.status, x: box.x, width: box.width,
                    start: Number(g.dataset.startMs), duration: Number(g.dataset.durationMs),
                    provider: Number(g.dataset.providerMs), shade: shade ? shade.width : 0,
                    firstToken: g.querySelector('.wf-first-token') !== null,
                };
            })"""
        )
    }
    assert set(drawn) == {"start", "quick", "long"}
    quick, long = drawn["quick"], drawn["long"]
    assert {bar["status"] for bar in drawn.values()} == {"completed"}
    # Widths in proportion to durations; the longest node has the widest bar.
    assert long["duration"] > quick["duration"] > drawn["start"]["duration"]
    assert max(drawn.values(), key=lambda bar: bar["width"])["node"] == "long"
    assert long["width"] / quick["width"] == pytest.approx(
        long["duration"] / quick["duration"], rel=0.03
    )
    # Placed by their start: `long` follows `quick` along the axis.
    assert long["start"] >= quick["start"] + quick["duration"]
    assert long["x"] >= quick["x"] + quick["width"] - 1
    # The provider part is shaded within the bar, the wait for the first token too.
    for bar in (quick, long):
        assert 0 < bar["provider"] <= bar["duration"]
        assert 0 < bar["shade"] <= bar["width"] + 0.5
        assert bar["firstToken"]
    assert drawn["start"]["shade"] == 0
    assert long["provider"] >= 1000  # the provider's deliberate delay
    assert await waterfall.get_by_test_id("waterfall-axis").locator("text").count() >= 2

    # The profile's summary, as GetExecution has it.
    summary = waterfall.get_by_test_id("profile-summary")
    for name in ("queue-wait", "engine", "provider", "event-log"):
        await expect(summary.get_by_test_id(f"profile-{name}")).to_contain_text(re.compile(r"\d"))
    provider_ms = await summary.get_by_test_id("profile-provider").get_attribute("data-ms")
    assert float(provider_ms or 0) >= 100 + 1000
    event_log_ms = await summary.get_by_test_id("profile-event-log").get_attribute("data-ms")
    assert float(event_log_ms or 0) > 0
    async with gateway.client(Role.VIEWER) as http:
        (listed,) = (await http.get("/v1/executions")).json()["executions"]
        execution = (await http.get(f"/v1/{listed['name']}")).json()
    recorded = {node["node_id"]: node["attempts"][0] for node in execution["trace"]}
    for node_id in ("quick", "long"):
        assert drawn[node_id]["provider"] == pytest.approx(
            recorded[node_id]["provider_ms"], abs=0.01
        )

    await waterfall.scroll_into_view_if_needed()
    path = screenshot_dir(repo_root) / "run-waterfall.png"
    await page.screenshot(path=str(path), full_page=True)
    await waterfall.screenshot(path=str(screenshot_dir(repo_root) / "waterfall.png"))
    assert path.stat().st_size > 10_000
