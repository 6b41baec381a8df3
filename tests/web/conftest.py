"""Fixtures for the browser tests: Debian's headless Chromium (installed by `make test`) under
Playwright, and a page that fails its test on any console error or uncaught exception."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from support.browser import CHROMIUM, CHROMIUM_ARGS


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
