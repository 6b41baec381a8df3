"""The browser page, in headless Chromium (Debian's, installed by `make test`), driven by
Playwright: served by Envoy, it uses only the public REST/SSE API with an API key.

The screenshot of the finished run is saved under the test run's output:
`test-output/browser/` (or `$AGENTFLOW_TEST_OUTPUT/browser/`).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from support.gateway_fixtures import RunningGateway
from support.rest import create_openai_source, create_workflow
from support.runs import answer_spec

from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

CHROMIUM = Path(os.environ.get("AGENTFLOW_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine has no outside network: no background calls to Google's hosts.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPLY = "Refunds take five days."

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _output_dir(repo_root: Path) -> Path:
    base = Path(os.environ.get("AGENTFLOW_TEST_OUTPUT", repo_root / "test-output"))
    folder = base / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
            "(or set AGENTFLOW_TEST_CHROMIUM to a Chromium binary)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def expected_console_errors() -> list[re.Pattern[str]]:
    """Console errors a test provokes on purpose (e.g. Chromium's line for a 401 response)."""
    return []


@pytest.fixture
async def page(
    browser: Browser, expected_console_errors: list[re.Pattern[str]]
) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        expected = any(p.search(message.text) for p in expected_console_errors)
        if message.type == "error" and not expected:
            problems.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield opened
    finally:
        await context.close()
    # Scripts that throw, or anything the Content-Security-Policy refused, would show here.
    assert problems == [], problems


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

    path = _output_dir(repo_root) / "run-viewer.png"
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
    await page.screenshot(path=str(_output_dir(repo_root) / "failed-run.png"), full_page=True)
