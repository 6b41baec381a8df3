"""`agentflow apikey list|revoke|rotate` as real processes against a real server's AdminService:
the tenant's keys listed (never a secret), one rotated with a grace period (the new key printed
once and working), one revoked (refused at once); refusals are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from support.api_fixtures import RunningApi
from support.api_helpers import rpc_error
from support.cli_process import agentflow, assert_refused

from agentflow_grpc._gen.agentflow.v1 import identity_pb2, identity_pb2_grpc
from agentflow_grpc.model.records import Role

pytestmark = pytest.mark.slow  # each test starts `agentflow` processes


async def role_of(api: RunningApi, secret: str) -> str:
    async with api.channel() as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        caller = await stub.GetCaller(
            identity_pb2.GetCallerRequest(), metadata=(("x-api-key", secret),)
        )
    return caller.role


async def test_keys_are_listed_rotated_and_revoked_on_the_server(
    api: RunningApi, tmp_path: Path
) -> None:
    admin = api.keys[Role.ADMIN]

    async def run(*args: str) -> tuple[str, str]:
        result = await agentflow(
            "apikey", *args, "--address", api.address, home=tmp_path, cwd=tmp_path, api_key=admin
        )
        assert result.returncode == 0, result.stderr
        return result.stdout, result.stderr

    listed, _ = await run("list", "--json")
    keys = json.loads(listed)
    assert sorted(key["role"] for key in keys) == sorted(role.value for role in Role)
    for secret in api.keys.values():
        assert secret not in listed
    runner = next(key for key in keys if key["role"] == "runner")

    text, summary = await run("list")
    assert runner["name"] in text
    assert f"{runner['prefix']}…" in text
    assert summary.strip() == "4 keys"

    rotated, note = await run("rotate", runner["name"].removeprefix("apiKeys/"), "--grace", "10m")
    new_secret = rotated.strip()
    assert new_secret.startswith("af_")
    assert f"the old {runner['name']} works until" in note
    assert await role_of(api, new_secret) == "runner"
    assert await role_of(api, api.keys[Role.RUNNER]) == "runner"  # within its grace

    revoked, _ = await run("revoke", runner["name"])
    assert revoked.startswith(f"revoked {runner['name']}")
    error = await rpc_error(role_of(api, api.keys[Role.RUNNER]))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_refusals_are_one_clear_line(api: RunningApi, tmp_path: Path) -> None:
    editor = await agentflow(
        "apikey",
        "list",
        "--address",
        api.address,
        home=tmp_path,
        cwd=tmp_path,
        api_key=api.keys[Role.EDITOR],
    )
    assert_refused(editor, "PERMISSION_DENIED: ListApiKeys needs the admin role")
    unknown = await agentflow(
        "apikey",
        "revoke",
        "not-a-key-id",
        "--address",
        api.address,
        home=tmp_path,
        cwd=tmp_path,
        api_key=api.keys[Role.ADMIN],
    )
    assert_refused(unknown, "INVALID_ARGUMENT")
    bad_grace = await agentflow(
        "apikey", "rotate", "x", "--grace", "soon", home=tmp_path, cwd=tmp_path
    )
    assert bad_grace.returncode == 2
    assert "not a duration" in bad_grace.stderr
