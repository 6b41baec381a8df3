"""Signing in on the page, in headless Chromium, at a real OpenID Provider (the oidc-provider npm
package): the authorization-code flow with PKCE through the provider's own login and consent
pages, back to the page served by Envoy, which then calls the REST API with the access token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from support.api_fixtures import RunningApi, running_api
from support.browser import screenshot_dir
from support.gateway_fixtures import RunningGateway, start_gateway
from support.oidc import OpenIdProvider
from support.oidc_fixtures import oidc_api_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def expected_console_errors() -> list[re.Pattern[str]]:
    # The provider's development login page asks for web fonts; this machine has no network.
    return [re.compile(r"net::ERR_")]


@pytest.fixture
async def signed_in_gateway(
    migrated_dsn: str,
    redis_url: str,
    owner: object,
    openid_provider: OpenIdProvider,
    tmp_path: Path,
) -> AsyncIterator[RunningGateway]:
    settings = oidc_api_settings(migrated_dsn, redis_url, openid_provider)
    api: RunningApi
    async with (
        running_api(settings) as api,
        start_gateway(api, tmp_path / "envoy", page_connect_origins=(openid_provider.url,)) as gw,
    ):
        openid_provider.restart(redirect_uris=[f"{gw.url}/"])
        yield gw


async def test_a_person_signs_in_at_the_issuer_and_the_page_uses_their_token(
    signed_in_gateway: RunningGateway, page: Page, repo_root: Path
) -> None:
    gateway = signed_in_gateway
    await page.goto(f"{gateway.url}/#/dashboard")
    await expect(page.get_by_test_id("sign-in")).to_be_visible()
    await page.get_by_test_id("sign-in").click()

    # The provider's development login and consent pages.
    await page.wait_for_url(re.compile(r"/interaction/"), wait_until="domcontentloaded")
    await page.locator('input[name="login"]').fill("grace")
    await page.locator('input[name="password"]').fill("any")
    await page.get_by_role("button", name=re.compile("sign-in", re.I)).click()
    await page.get_by_role("button", name=re.compile("continue", re.I)).click()

    # Back on the page, on the view it left, the code exchanged and gone from the address.
    await page.wait_for_url(f"{gateway.url}/#/dashboard")
    signed_in = page.get_by_test_id("signed-in-as")
    await expect(signed_in).to_have_text("grace · acme · runner")
    await expect(page.get_by_test_id("sign-out")).to_be_visible()
    await expect(page.get_by_test_id("sign-in")).to_be_hidden()
    # The page calls the API with the person's token: the workflow list loads (empty).
    await page.goto(f"{gateway.url}/#/")
    await expect(page.locator("#workflow-message")).to_contain_text("No workflows")
    await page.screenshot(path=screenshot_dir(repo_root) / "signed-in.png")

    await page.get_by_test_id("sign-out").click()
    await expect(page.get_by_test_id("sign-in")).to_be_visible()
    await expect(page.locator("#workflow-message")).to_contain_text("Sign in")
