"""The fake's HTTP API: :class:`FakeProvider`, its state and the aiohttp handlers serving it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from agentflow_grpc.testing._replies import (
    TINY_PNG,
    chat_chunks,
    chat_completion,
    content_text,
    default_reply,
    error_body,
    generated_images,
)
from agentflow_grpc.testing._rules import RecordedRequest, Rule, claim

CHAT_PATH = "/v1/chat/completions"
AZURE_PREFIX = "/openai/deployments"
IMAGES_PATH = "/v1/images/generations"
_LOGGED_HEADERS = frozenset(
    {"authorization", "api-key", "content-type", "accept", "user-agent", "openai-organization"}
)
_BODY: web.RequestKey[Any] = web.RequestKey("fake_provider_body")


def _error(status: int, message: str | None = None) -> web.Response:
    """An OpenAI-style error response."""
    return web.json_response(error_body(status, message), status=status)


class FakeProvider:
    """The fake's state (rules, request log, latency) and its aiohttp handlers; thread-safe."""

    def __init__(self, *, latency: float = 0.0, models: Sequence[str] = ("fake-model",)) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._requests: list[RecordedRequest] = []
        self._latency = 0.0
        self.set_latency(latency)
        self.models = tuple(models)

    def add_rule(self, **kwargs: Any) -> Rule:
        """Append a :class:`Rule` built from ``kwargs``; earlier rules take precedence."""
        rule = Rule(**kwargs)
        with self._lock:
            self._rules.append(rule)
        return rule

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def latency(self) -> float:
        return self._latency

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` to every request from now on (control API excepted)."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency = float(seconds)

    def reset(self) -> None:
        """Forget rules and recorded requests; latency back to 0."""
        with self._lock:
            self._rules.clear()
            self._requests.clear()
            self._latency = 0.0

    def app(self) -> web.Application:
        """A new aiohttp application serving this provider's state."""
        app = web.Application(middlewares=[self._middleware])
        app.on_response_prepare.append(_allow_any_origin)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_post(IMAGES_PATH, self._images)
        app.router.add_get("/v1/models", self._models)
        # Azure OpenAI: the deployment in the path, `?api-version=` and an `api-key` header.
        app.router.add_post(AZURE_PREFIX + "/{deployment}/chat/completions", self._chat)
        app.router.add_post(AZURE_PREFIX + "/{deployment}/images/generations", self._images)
        app.router.add_get("/openai/models", self._models)  # Azure's model list (TestSource)
        app.router.add_get("/images/{image_id:[A-Za-z0-9_-]+}.png", self._image_file)
        app.router.add_post("/_fake/rules", self._control_add_rule)
        app.router.add_post("/_fake/reset", self._control_reset)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_put("/_fake/latency", self._control_latency)
        return app

    async def _take_rule(self, path: str, model: str | None, text: str) -> Rule | None:
        """Claim the first live matching rule, then sleep its ``delay``."""
        with self._lock:
            rule = claim(self._rules, path, model, text)
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)
        return rule

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":  # CORS preflight, for browser demos
            return web.Response(
                status=204,
                headers={"Access-Control-Allow-Methods": "*", "Access-Control-Allow-Headers": "*"},
            )
        if request.path.startswith("/_fake/"):
            return await handler(request)
        body: Any = None
        invalid = False
        if request.body_exists:
            try:
                body = await request.json()
            except ValueError:
                body, invalid = await request.text(), True
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() in _LOGGED_HEADERS}
        with self._lock:
            self._requests.append(
                RecordedRequest(request.method, request.path, body, headers, time.time())
            )
        if self._latency:
            await asyncio.sleep(self._latency)
        auth = request.headers.get("Authorization", "")
        if request.path.startswith("/v1/") and not (auth.startswith("Bearer ") and auth[7:]):
            return _error(401, "You didn't provide an API key (Authorization: Bearer YOUR_KEY).")
        if request.path.startswith(AZURE_PREFIX) and not (
            request.headers.get("api-key") and request.query.get("api-version")
        ):
            return _error(401, "Azure OpenAI requests need an api-key header and ?api-version=.")
        if invalid:
            return _error(400, "We could not parse the JSON body of your request.")
        request[_BODY] = body
        return await handler(request)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return _error(400, "'messages' is a required property")
        model = str(body.get("model", ""))
        texts = [content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        rule = await self._take_rule(request.path, model, "\n".join(texts))
        if rule is not None and rule.status is not None:
            return _error(rule.status, rule.message)
        reply = rule.reply_text() if rule is not None else None
        if reply is None:
            reply = default_reply(body, messages)
        if not body.get("stream"):
            return web.json_response(chat_completion(model, texts, reply))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = chat_chunks(model, texts, reply, include_usage=include_usage)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            for index, event in enumerate(events):
                if index and rule is not None and rule.chunk_delay:
                    await asyncio.sleep(rule.chunk_delay)
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:  # the client went away mid-stream
            pass
        return response

    async def _images(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, str):
            return _error(400, "'prompt' is a required property")
        count, fmt = body.get("n") or 1, body.get("response_format") or "url"
        if not isinstance(count, int) or not 1 <= count <= 10:
            return _error(400, "'n' must be an integer from 1 to 10")
        if fmt not in ("url", "b64_json"):
            return _error(400, "'response_format' must be 'url' or 'b64_json'")
        rule = await self._take_rule(request.path, body.get("model"), prompt)
        if rule is not None and rule.status is not None:
            return _error(rule.status, rule.message)
        origin = str(request.url.origin())
        return web.json_response(generated_images(origin, prompt, count, fmt))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        rule = await self._take_rule(request.path, None, "")
        if rule is not None and rule.status is not None:
            return _error(rule.status, rule.message)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _image_file(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=TINY_PNG, content_type="image/png")

    async def _control_add_rule(self, request: web.Request) -> web.StreamResponse:
        try:
            rule = self.add_rule(**await request.json())
        except (TypeError, ValueError) as exc:  # bad JSON, not an object, unknown or bad field
            return _error(400, f"bad rule: {exc}")
        return web.json_response(rule.to_dict(), status=201)

    async def _control_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_requests(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"requests": [asdict(r) for r in self.requests]})

    async def _control_latency(self, request: web.Request) -> web.StreamResponse:
        try:
            self.set_latency(float((await request.json())["seconds"]))
        except (TypeError, ValueError, KeyError) as exc:
            return _error(400, f"expected {{'seconds': <number >= 0>}}: {exc!r}")
        return web.json_response({"seconds": self.latency})


async def _allow_any_origin(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
