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

from agentflow_grpc.testing import _anthropic, _gemini
from agentflow_grpc.testing._entra import FakeEntra
from agentflow_grpc.testing._replies import (
    TINY_PNG,
    chat_chunks,
    chat_completion,
    content_text,
    context_too_long_body,
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
    | {"x-api-key", "anthropic-version"}
    | {"x-goog-api-key"}
)
_BODY: web.RequestKey[Any] = web.RequestKey("fake_provider_body")


def _error(
    status: int, message: str | None = None, *, retry_after: str | None = None
) -> web.Response:
    """An OpenAI-style error response."""
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response(error_body(status, message), status=status, headers=headers)


def _rule_error(rule: Rule | None) -> web.Response | None:
    """The OpenAI-style error a rule scripts, if it scripts one."""
    if rule is None:
        return None
    if rule.context_too_long:
        return web.json_response(context_too_long_body(), status=400)
    if rule.status is not None:
        return _error(rule.status, rule.message, retry_after=rule.retry_after)
    return None


class FakeProvider:
    """The fake's state (rules, request log, latency) and its aiohttp handlers; thread-safe."""

    def __init__(self, *, latency: float = 0.0, models: Sequence[str] = ("fake-model",)) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._requests: list[RecordedRequest] = []
        self._latency = 0.0
        self._cut_streams = 0
        self.set_latency(latency)
        self.models = tuple(models)
        self.entra = FakeEntra()  # Microsoft Entra ID: Azure OpenAI's bearer tokens

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
    def cut_streams(self) -> int:
        """Streamed replies the client closed before their end (a cancelled call)."""
        with self._lock:
            return self._cut_streams

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
            self._cut_streams = 0
        self.entra.reset()

    def app(self) -> web.Application:
        """A new aiohttp application serving this provider's state."""
        app = web.Application(middlewares=[self._middleware])
        app.on_response_prepare.append(_allow_any_origin)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_post(IMAGES_PATH, self._images)
        app.router.add_get("/v1/models", _anthropic.models_handler(self, self._models))
        _anthropic.add_routes(app, self)  # Anthropic's Messages API (POST /v1/messages)
        _gemini.add_gemini_routes(app, self)  # the Gemini API (/v1beta/models…)
        # Azure OpenAI: the deployment in the path, `?api-version=`, an `api-key` header or an
        # Entra ID token from the fake identity platform (`_entra.py`).
        self.entra.add_routes(app)
        app.router.add_post(AZURE_PREFIX + "/{deployment}/chat/completions", self._chat)
        app.router.add_post(AZURE_PREFIX + "/{deployment}/images/generations", self._images)
        app.router.add_get("/openai/models", self._models)  # Azure's model list (TestSource)
        app.router.add_get("/images/{image_id:[A-Za-z0-9_-]+}.png", self._image_file)
        app.router.add_post("/_fake/rules", self._control_add_rule)
        app.router.add_post("/_fake/reset", self._control_reset)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_put("/_fake/latency", self._control_latency)
        return app

    async def take_rule(self, path: str, model: str | None, text: str) -> Rule | None:
        """Claim the first live matching rule, then sleep its ``delay`` (for the handlers of
        every wire format)."""
        with self._lock:
            rule = claim(self._rules, path, model, text)
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)
        return rule

    async def stream(
        self, request: web.Request, rule: Rule | None, events: Sequence[bytes]
    ) -> web.StreamResponse:
        """Send ``events`` (each a whole server-sent event, encoded) as a ``text/event-stream``,
        ``rule.chunk_delay`` apart; a client that goes away mid-stream counts as a cut stream."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            for index, event in enumerate(events):
                if index and rule is not None and rule.chunk_delay:
                    await asyncio.sleep(rule.chunk_delay)
                await response.write(event)
            await response.write_eof()
        except ConnectionResetError:  # the client went away mid-stream
            with self._lock:
                self._cut_streams += 1
        return response

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":  # CORS preflight, for browser demos
            return web.Response(
                status=204,
                headers={"Access-Control-Allow-Methods": "*", "Access-Control-Allow-Headers": "*"},
            )
        if request.path.startswith("/_fake/") or self.entra.serves(request.path):
            return await handler(request)  # the control API; the identity platform (forms)
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
        if _anthropic.handles(request):  # its key (bearer or x-api-key), anthropic-version
            if (refused := _anthropic.refusal(request)) is not None:
                return refused
        elif request.path.startswith("/v1/") and not (auth.startswith("Bearer ") and auth[7:]):
            return _error(401, "You didn't provide an API key (Authorization: Bearer YOUR_KEY).")
        if (
            request.path.startswith("/openai/")
            and (refused := self.entra.azure_auth_error(request)) is not None
        ):  # Azure's api-key, or a token of the fake Entra ID
            return refused
        if (
            request.path.startswith(_gemini.GEMINI_PREFIX + "/")
            and (refused := _gemini.gemini_refusal(request, invalid_json=invalid)) is not None
        ):  # Gemini's x-goog-api-key (or ?key=), its own 403 and 400
            return refused
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
        rule = await self.take_rule(request.path, model, "\n".join(texts))
        if (failure := _rule_error(rule)) is not None:
            return failure
        reply = rule.reply_text() if rule is not None else None
        if reply is None:
            reply = default_reply(body, messages)
        finish = "stop" if rule is None else rule.finish
        cache_read = 0 if rule is None else rule.cache_read_tokens
        if not body.get("stream"):
            return web.json_response(chat_completion(model, texts, reply, finish, cache_read))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = chat_chunks(
            model, texts, reply, include_usage=include_usage, finish=finish, cache_read=cache_read
        )
        events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
        return await self.stream(request, rule, [*events, b"data: [DONE]\n\n"])

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
        rule = await self.take_rule(request.path, body.get("model"), prompt)
        if (failure := _rule_error(rule)) is not None:
            return failure
        origin = str(request.url.origin())
        return web.json_response(generated_images(origin, prompt, count, fmt))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        rule = await self.take_rule(request.path, None, "")
        if (failure := _rule_error(rule)) is not None:
            return failure
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
