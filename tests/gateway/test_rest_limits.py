"""Rate limits through a real Envoy: a tenant over its burst gets HTTP 429 with the reason and a
RetryInfo carrying the real wait, for unary calls and SSE streams alike; other tenants go on."""

from __future__ import annotations

from pathlib import Path

from support.api_fixtures import api_settings, running_api
from support.gateway_fixtures import start_gateway
from support.rest import api_error, detail
from support.runs import answer_spec


async def test_a_tenant_over_its_burst_gets_429_with_retry_info(
    migrated_dsn: str, redis_url: str, owner: object, tmp_path: Path
) -> None:
    settings = api_settings(
        migrated_dsn, redis_url, tenant_requests_per_second=0.001, tenant_request_burst=2
    )
    async with (
        running_api(settings) as api,
        start_gateway(api, tmp_path / "envoy") as gateway,
        gateway.client() as client,
    ):
        for _ in range(2):
            assert (await client.get("/v1/workflows")).status_code == 200
        refused = await client.get("/v1/workflows")
        body = api_error(refused, 429, 8, "rate_limited.tenant")
        delay = detail(body, "RetryInfo")["retry_delay"]  # a Duration in JSON: "999.876s"
        assert delay.endswith("s")
        assert 900 < float(delay.removesuffix("s")) <= 1000
        # The SSE endpoint is refused the same way, before its first event.
        request = {"spec": answer_spec(), "inputs": {"question": "q"}}
        streamed = await client.post("/v1/executions:execute", json=request)
        api_error(streamed, 429, 8, "rate_limited.tenant")
        # Health needs no key and no rate.
        assert (await client.get("/v1/health")).status_code == 200
        # Another tenant's key is not affected.
        other = {"x-api-key": api.other_tenant_key}
        assert (await client.get("/v1/workflows", headers=other)).status_code == 200
