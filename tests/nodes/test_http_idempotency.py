"""The http node's `Idempotency-Key` header: on POST and PATCH only, stable per visit of a node.

A local aiohttp server on 127.0.0.1 records every request; it can answer 503 a given number of
times first, and counts requests so that a router can loop over the node.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from support.crm_api import serve
from support.retries import FAST_RETRY
from support.runs import collect, output_of, single_node_workflow, validated
from support.sources import crm_source

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.nodes.http import idempotency_key
from agentflow_grpc.sources.registry import SourceSet

QUOTED_UUID = re.compile(r'^"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$')


@dataclass
class RecordingApi:
    """Answers `/call` with `{"n": requests so far}`, after `failures` answers of 503."""

    failures: int = 0
    keys: list[str | None] = field(default_factory=list)
    raw_headers: list[list[tuple[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.keys.append(request.headers.get("Idempotency-Key"))
        self.raw_headers.append([(k, v) for k, v in request.headers.items()])
        if self.failures > 0:
            self.failures -= 1
            return web.json_response({"error": "busy"}, status=503)
        return web.json_response({"n": len(self.keys)})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/call", self.handle)
        return app


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, RecordingApi]]:
    recording = RecordingApi()
    async with serve(recording.app()) as url:
        yield url, recording


async def run(
    engine: ExecutionEngine,
    document: dict[str, Any],
    url: str,
    execution_id: str | None = None,
) -> list[ExecutionEvent]:
    sources = SourceSet([crm_source(url)])
    try:
        spec = validated(document, sources)
        return await collect(engine.execute(spec, {}, sources=sources, execution_id=execution_id))
    finally:
        await sources.aclose()


def call(method: str, **config: Any) -> dict[str, Any]:
    """input → one http node `call` with `method` on the recording API."""
    body = {} if method not in ("GET", "HEAD") else None
    node_config = {"method": method, "url": "/call", "body": body, **config}
    return single_node_workflow(
        {"id": "call", "type": "http", "source": "crm", "retry": FAST_RETRY, "config": node_config},
        name="idempotency-test",
    )


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_post_and_patch_carry_a_quoted_key_derived_from_execution_node_and_visit(
    method: str, engine: ExecutionEngine, api: tuple[str, RecordingApi]
) -> None:
    url, recording = api
    events = await run(engine, call(method), url, execution_id="exec-1")

    assert output_of(events)["status"] == 200
    (key,) = recording.keys
    assert key is not None
    assert QUOTED_UUID.match(key)
    assert key == f'"{idempotency_key("exec-1", "call", 1)}"'
    assert uuid.UUID(key.strip('"')).version == 5


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_idempotent_methods_carry_no_key(
    method: str, engine: ExecutionEngine, api: tuple[str, RecordingApi]
) -> None:
    url, recording = api
    events = await run(engine, call(method), url)

    assert output_of(events)["status"] == 200
    assert recording.keys == [None]


async def test_every_retry_of_an_attempt_sends_the_same_key(
    engine: ExecutionEngine, api: tuple[str, RecordingApi]
) -> None:
    url, recording = api
    recording.failures = 2
    events = await run(engine, call("POST"), url)

    assert output_of(events)["status"] == 200
    assert [e.attempt for e in events if e.type is EventType.NODE_STARTED][1:] == [1, 2, 3]
    assert len(recording.keys) == 3
    assert len(set(recording.keys)) == 1
    assert recording.keys[0] is not None


async def test_a_resumed_run_with_the_same_execution_id_sends_the_same_keys(
    engine: ExecutionEngine, api: tuple[str, RecordingApi]
) -> None:
    url, recording = api
    await run(engine, call("POST"), url, execution_id="resumed-exec")
    await run(engine, call("POST"), url, execution_id="resumed-exec")
    await run(engine, call("POST"), url, execution_id="another-exec")

    first, again, other = recording.keys
    assert first == again
    assert other != first


async def test_each_visit_of_a_node_in_a_loop_sends_a_new_key(
    engine: ExecutionEngine, api: tuple[str, RecordingApi]
) -> None:
    url, recording = api
    document = call("POST")
    document["nodes"] += [
        {
            "id": "again",
            "type": "router",
            "config": {
                "routes": [{"name": "more", "when": "nodes.call.output.body.n < 3"}],
                "default": "done",
                "max_iterations": 5,
            },
        },
        {"id": "finish", "type": "http", "source": "crm", "config": {"url": "/call"}},
    ]
    document["edges"] = [
        {"from": "start", "to": "call"},
        {"from": "call", "to": "again"},
        {"from": "again", "to": "call", "route": "more"},
        {"from": "again", "to": "finish", "route": "done"},
    ]
    document["outputs"] = {"result": {"from": "nodes.finish.output"}}
    events = await run(engine, document, url, execution_id="loop-exec")

    assert recording.keys == [
        *(f'"{idempotency_key("loop-exec", "call", visit)}"' for visit in (1, 2, 3)),
        None,  # `finish`: a GET
    ]
    assert len(set(recording.keys)) == 4
    assert events[-1].type is EventType.EXECUTION_COMPLETED


@pytest.mark.parametrize("name", ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"])
async def test_a_key_the_node_sets_itself_wins_in_any_case(
    name: str, engine: ExecutionEngine, api: tuple[str, RecordingApi]
) -> None:
    url, recording = api
    await run(engine, call("POST", headers={name: '"order-{{ inputs | length }}"'}), url)

    assert recording.keys == ['"order-0"']
    (headers,) = recording.raw_headers
    assert [k for k, _ in headers if k.lower() == "idempotency-key"] == [name]


async def test_idempotency_key_false_sends_none(
    engine: ExecutionEngine, api: tuple[str, RecordingApi]
) -> None:
    url, recording = api
    await run(engine, call("POST", idempotency_key=False), url)

    assert recording.keys == [None]
