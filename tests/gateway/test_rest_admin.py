"""The admin and identity API as browsers and scripts see it: JSON over HTTP through a real
Envoy (its gRPC-JSON transcoder): keys made, listed, rotated and revoked, the tenant's limits,
the audit log filtered, who is calling, the sign-in config without a key; errors with fields."""

from __future__ import annotations

import httpx
from support.gateway_fixtures import RunningGateway
from support.rest import api_error, field_violations

from agentflow_grpc.model.records import Role


async def test_keys_made_listed_rotated_and_revoked_over_rest(gateway: RunningGateway) -> None:
    async with gateway.client(Role.ADMIN) as http:
        made = await http.post(
            "/v1/apiKeys", json={"role": "runner", "description": "nightly", "workflows": []}
        )
        assert made.status_code == 200, made.text
        body = made.json()
        secret, name = body["secret"], body["api_key"]["name"]
        assert body["api_key"]["state"] == "STATE_ACTIVE"

        async with httpx.AsyncClient(
            base_url=gateway.url, headers={"x-api-key": secret}, timeout=30
        ) as as_key:
            caller = (await as_key.get("/v1/caller")).json()
            assert (caller["tenant"], caller["role"]) == ("acme", "runner")

            listed = (await http.get("/v1/apiKeys")).json()["api_keys"]
            assert name in {key["name"] for key in listed}
            assert secret not in str(listed)

            rotated = await http.post(f"/v1/{name}:rotate", json={"grace_period": "600s"})
            assert rotated.status_code == 200, rotated.text
            new_secret = rotated.json()["secret"]
            assert rotated.json()["previous"]["expire_time"]
            assert (await as_key.get("/v1/caller")).status_code == 200  # within its grace

            revoked = await http.post(f"/v1/{name}:revoke", json={})
            assert revoked.json()["state"] == "STATE_REVOKED"
            refused = await as_key.get("/v1/caller")
            api_error(refused, 401, 16, "unauthenticated")
        caller = await http.get("/v1/caller", headers={"x-api-key": new_secret})
        assert caller.json()["role"] == "runner"

        bad = await http.post("/v1/apiKeys", json={"role": "root"})
        body = api_error(bad, 400, 3, "invalid_argument")
        assert [field for field, _ in field_violations(body)] == ["api_key.role"]


async def test_tenant_limits_and_the_audit_log_over_rest(gateway: RunningGateway) -> None:
    async with gateway.client(Role.ADMIN) as http:
        tenant = (await http.get("/v1/tenant")).json()
        assert tenant["display_name"] == "acme"
        changed = await http.patch(
            "/v1/tenant",
            params={"update_mask": "limits.tokens_per_day"},
            json={"limits": {"tokens_per_day": "5000"}},
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["limits"]["tokens_per_day"] == "5000"
        assert changed.json()["effective_limits"]["tokens_per_day"] == "5000"

        bad = await http.patch(
            "/v1/tenant",
            params={"update_mask": "limits.request_burst"},
            json={"limits": {"request_burst": "0"}},
        )
        body = api_error(bad, 400, 3, "invalid_argument")
        assert [field for field, _ in field_violations(body)] == ["limits.request_burst"]

        events = (
            await http.get("/v1/auditEvents", params={"action": "tenant.update_limits"})
        ).json()
        (event,) = events["audit_events"]
        assert event["outcome"] == "ok"
        assert event["request_id"] == changed.headers["x-request-id"]
        assert len(event["hash"]) == 64

    async with gateway.client(Role.EDITOR) as http:
        api_error(await http.get("/v1/auditEvents"), 403, 7, "permission_denied")


async def test_the_sign_in_config_needs_no_key(gateway: RunningGateway) -> None:
    async with gateway.client(None) as http:
        config = await http.get("/v1/signInConfig")
        assert config.status_code == 200
        assert config.json()["enabled"] is False
        api_error(await http.get("/v1/caller"), 401, 16, "unauthenticated")
