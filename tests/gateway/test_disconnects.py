"""Clients that go away mid-stream, through Envoy: a browser tab closed, `curl | head`.

Envoy resets the upstream stream when its client leaves. Asking grpc for an ended call's peer
crashed the whole server (a segfault in grpc's C core) the first time that happened; these
tests keep that shut.
"""

from __future__ import annotations

import json

import httpx
import pytest
from support.api_helpers import eventually
from support.gateway_fixtures import RunningGateway
from support.rest import create_openai_source, create_workflow
from support.runs import answer_spec

from agentflow_grpc.model.records import Role
from agentflow_grpc.testing import FakeProviderServer

SLOW_REPLY = "one two three four five six seven eight nine ten"


async def _slow_workflow(gateway: RunningGateway, provider: FakeProviderServer) -> str:
    provider.add_rule(reply=SLOW_REPLY, chunk_delay=0.3)
    async with gateway.client(Role.EDITOR) as http:
        await create_openai_source(http, provider)
        return str((await create_workflow(http, answer_spec()))["name"])


async def _read_until_token_then_leave(
    http: httpx.AsyncClient, method: str, path: str, **kw: object
) -> str:
    """Read an SSE stream until the first node_token, then drop the connection; the id of the
    execution it was about."""
    async with http.stream(method, path, **kw) as response:  # type: ignore[arg-type]
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line.removeprefix("data:"))
                if event["type"] == "node_token":
                    return str(event["execution"])
    raise AssertionError("the stream ended before any token")


async def test_clients_leaving_right_after_the_first_bytes_do_not_take_the_server_down(
    gateway: RunningGateway, provider: FakeProviderServer
) -> None:
    """Without the fix, the second or third of these ended the server with SIGSEGV."""
    await _slow_workflow(gateway, provider)
    provider.reset()  # fast replies: the run races the reset
    async with gateway.client(Role.RUNNER) as http:
        workflow = (await http.get("/v1/workflows")).json()["workflows"][0]["name"]
        for _ in range(5):
            async with http.stream(
                "POST",
                "/v1/executions:execute",
                json={"workflow": workflow, "inputs": {"question": "Quick"}},
            ) as response:
                async for _chunk in response.aiter_bytes():
                    break  # and leave

        async def all_ended() -> list[str] | None:
            listed = (await http.get("/v1/executions")).json()["executions"]
            states = [execution["state"] for execution in listed]
            done = {"STATE_COMPLETED", "STATE_CANCELLED"}
            return states if len(states) == 5 and set(states) <= done else None

        await eventually(all_ended, timeout=10)
        health = await http.get("/v1/health")
        assert health.status_code == 200
        assert health.json()["status"] == "SERVING"


async def test_a_client_leaving_an_execute_stream_cancels_the_run_and_the_server_lives_on(
    gateway: RunningGateway, provider: FakeProviderServer
) -> None:
    workflow = await _slow_workflow(gateway, provider)
    async with gateway.client(Role.RUNNER) as http:
        for _ in range(2):
            execution = await _read_until_token_then_leave(
                http,
                "POST",
                "/v1/executions:execute",
                json={"workflow": workflow, "inputs": {"question": "Count"}},
            )

            async def cancelled(name: str = execution) -> dict[str, object] | None:
                found = (await http.get(f"/v1/{name}")).json()
                return found if found["state"] == "STATE_CANCELLED" else None

            recorded = await eventually(cancelled, timeout=10)
            assert recorded["error"]["code"] == "cancelled"  # type: ignore[index]

        health = await http.get("/v1/health")
        assert health.status_code == 200
        assert health.json()["status"] == "SERVING"


@pytest.mark.slow
async def test_a_follower_leaving_a_stream_leaves_the_run_going(
    gateway: RunningGateway, provider: FakeProviderServer
) -> None:
    workflow = await _slow_workflow(gateway, provider)
    async with gateway.client(Role.RUNNER) as http:
        started = await http.post(
            "/v1/executions", json={"workflow": workflow, "inputs": {"question": "Count"}}
        )
        assert started.status_code == 200, started.text
        name = started.json()["name"]
        await _read_until_token_then_leave(http, "GET", f"/v1/{name}:stream")

        async def completed() -> dict[str, object] | None:
            found = (await http.get(f"/v1/{name}")).json()
            return found if found["state"] == "STATE_COMPLETED" else None

        recorded = await eventually(completed, timeout=20)
        assert recorded["outputs"] == {"answer": SLOW_REPLY}
        assert (await http.get("/v1/health")).status_code == 200  # alive after the reset
