"""A fake OpenAI-compatible provider: a test double for OpenAI-style HTTP APIs.

Tests, benchmarks and local demos point an OpenAI client (the real ``openai`` SDK included) at
it instead of a paid, slow and non-deterministic provider. Production code never imports it.

Endpoints (``/v1/*`` require an ``Authorization: Bearer ...`` header, any key):

- ``POST /v1/chat/completions``: a whole completion, or ``stream: true`` as server-sent events
  ending in ``data: [DONE]`` (with a usage chunk when ``stream_options.include_usage``).
- ``POST /v1/images/generations``: ``n`` images as ``url`` (served by ``GET /images/{id}.png``)
  or ``b64_json``; every image is the same 1x1 PNG.
- ``GET /v1/models``.
- Control API, for other processes (e.g. a browser demo): ``POST /_fake/rules`` (body: the
  :class:`Rule` fields), ``POST /_fake/reset``, ``GET /_fake/requests`` and
  ``PUT /_fake/latency`` (body ``{"seconds": ...}``).

Replies are deterministic: ``Echo: <last user message>``; for a ``json_schema`` response format,
a document that satisfies the schema (:func:`schema_instance`); for ``json_object``,
``{"echo": <last user message>}``. Scripted :class:`Rule` objects, matched in order, override
replies, inject errors and add delays. Every request except the control API is recorded.

In-process use::

    with FakeProviderServer() as server:
        server.add_rule(contains="flaky", status=500, times=2)
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)

Standalone: ``python -m agentflow_grpc.testing.fake_provider [--host H] [--port P] [--latency S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import enum
import http
import json
import math
import random
import re
import signal
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Self

import rstr
from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = [
    "AZURE_PREFIX",
    "CHAT_PATH",
    "IMAGES_PATH",
    "TINY_PNG",
    "FakeProvider",
    "FakeProviderServer",
    "RecordedRequest",
    "Rule",
    "main",
    "schema_instance",
]

CHAT_PATH = "/v1/chat/completions"
AZURE_PREFIX = "/openai/deployments"
IMAGES_PATH = "/v1/images/generations"
_LOGGED_HEADERS = frozenset(
    {"authorization", "api-key", "content-type", "accept", "user-agent", "openai-organization"}
)
_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_CHUNK_PIECE = re.compile(r"\s+|\S{1,6}\s*")  # streamed pieces: a short word and its spaces
_FINGERPRINT = "fp_fake"
_SHUTDOWN_TIMEOUT = 0.5  # seconds the server waits for in-flight requests when stopping
_BODY: web.RequestKey[Any] = web.RequestKey("fake_provider_body")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


TINY_PNG = (  # a valid 1x1 transparent RGBA PNG
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 5))
    + _png_chunk(b"IEND", b"")
)


class _Unset(enum.Enum):
    UNSET = enum.auto()


@dataclass
class Rule:
    """A scripted behaviour, applied when every given match criterion holds.

    Match criteria (``None`` matches anything): ``model`` equals the request's model;
    ``contains`` is a substring of the concatenated message contents (or the image prompt);
    ``path`` equals the request path, e.g. :data:`CHAT_PATH`.

    Effects: ``reply`` is the assistant's text, or ``json`` any JSON value sent serialized as
    the text (images ignore both); ``status`` answers with that HTTP error status and an
    OpenAI-style error body (``message`` overrides its text); ``delay`` waits that many seconds
    before responding, errors included; ``chunk_delay`` waits between streamed chunks; the rule
    is exhausted after ``times`` matches (``None``: never).
    """

    model: str | None = None
    contains: str | None = None
    path: str | None = None
    reply: str | None = None
    json: Any = _Unset.UNSET
    status: int | None = None
    message: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    times: int | None = None
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), not {self.status}")
        if min(self.delay, self.chunk_delay, 0 if self.times is None else self.times) < 0:
            raise ValueError("delay, chunk_delay and times must not be negative")
        if self.reply is not None and self.json is not _Unset.UNSET:
            raise ValueError("give reply or json, not both")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, path: str, model: str | None, text: str) -> bool:
        return (
            (self.path is None or self.path == path)
            and (self.model is None or self.model == model)
            and (self.contains is None or self.contains in text)
        )

    def reply_text(self) -> str | None:
        """The scripted reply, or ``None`` when the rule leaves the default reply."""
        return self.reply if self.json is _Unset.UNSET else json.dumps(self.json)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.json is _Unset.UNSET:
            del data["json"]
        return data


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received; ``body`` is its parsed JSON (``None`` if none, text if bad)."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]
    time: float  # time.time() on arrival


def schema_instance(schema: Any) -> Any:
    """Return a small deterministic JSON value that satisfies ``schema``.

    Covers the keywords structured-output schemas use: ``const``; ``enum`` (first value);
    ``anyOf``/``oneOf`` (first branch); ``type`` (first non-null of a list, else inferred);
    objects get every property (and required names without one); arrays ``minItems`` items, at
    least one unless ``maxItems`` is 0; integers and numbers ``minimum`` (else 1, capped by
    ``maximum``); booleans ``true``; strings ``"text"`` stretched to ``minLength``, cut to
    ``maxLength``, or a sample for a few ``format`` values, or a match of ``pattern`` (rstr).
    No ``$ref`` or ``allOf``.
    """
    if not isinstance(schema, Mapping):
        return None if schema is False else "text"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        value = {name: schema_instance(sub) for name, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties")
        for name in schema.get("required", []):
            value.setdefault(name, schema_instance(extra if isinstance(extra, Mapping) else {}))
        return value
    if kind == "array":
        count = max(1, schema.get("minItems", 0))
        count = min(count, schema.get("maxItems", count))
        return [schema_instance(schema.get("items", {})) for _ in range(count)]
    if kind in ("integer", "number"):
        number = schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1)
        number = min(number, schema.get("maximum", schema.get("exclusiveMaximum", math.inf) - 1))
        return math.ceil(number) if kind == "integer" else float(number)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if "pattern" in schema:
        # A string matching the pattern, the same one each time for the same pattern.
        return rstr.Rstr(random.Random(schema["pattern"])).xeger(schema["pattern"])
    text = _STRING_FORMATS.get(schema.get("format", ""), "text")
    min_length = schema.get("minLength", 0)
    text = (text * (min_length // len(text) + 1))[: max(min_length, len(text))]
    return text[: schema.get("maxLength", len(text))]


def _error(status: int, message: str | None = None) -> web.Response:
    """An OpenAI-style error response."""
    kind, code = "invalid_request_error", None
    if status >= 500:
        kind = "server_error"
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status == 401:
        code = "invalid_api_key"
    if message is None:
        try:
            message = f"{http.HTTPStatus(status).phrase} (injected by the fake provider)"
        except ValueError:
            message = f"Error {status} (injected by the fake provider)"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _content_text(content: Any) -> str:
    """The text of a message's ``content``: a string or a list of ``{"text": ...}`` parts."""
    if isinstance(content, list):
        parts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(text for text in parts if isinstance(text, str))
    return content if isinstance(content, str) else ""


def _default_reply(body: Mapping[str, Any], messages: Sequence[Any]) -> str:
    last_user = next(
        (
            _content_text(m.get("content"))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return json.dumps(schema_instance((fmt.get("json_schema") or {}).get("schema", {})))
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return json.dumps({"echo": last_user})
    return f"Echo: {last_user[:200]}"


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
        app.router.add_get("/images/{image_id:[A-Za-z0-9_-]+}.png", self._image_file)
        app.router.add_post("/_fake/rules", self._control_add_rule)
        app.router.add_post("/_fake/reset", self._control_reset)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_put("/_fake/latency", self._control_latency)
        return app

    async def _take_rule(self, path: str, model: str | None, text: str) -> Rule | None:
        """Claim the first live matching rule, then sleep its ``delay``."""
        with self._lock:
            rule = next(
                (r for r in self._rules if not r.exhausted and r.matches(path, model, text)), None
            )
            if rule is not None:
                rule.hits += 1
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
        texts = [_content_text(m.get("content")) for m in messages if isinstance(m, dict)]
        rule = await self._take_rule(request.path, model, "\n".join(texts))
        if rule is not None and rule.status is not None:
            return _error(rule.status, rule.message)
        reply = rule.reply_text() if rule is not None else None
        if reply is None:
            reply = _default_reply(body, messages)
        prompt_tokens, completion_tokens = sum(len(t.split()) for t in texts), len(reply.split())
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        head = {
            "id": f"chatcmpl-fake{uuid.uuid4().hex[:20]}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": _FINGERPRINT,
        }
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            return web.json_response(
                {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {**head, "object": "chat.completion.chunk"}
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice], **extra}

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": piece}) for piece in _CHUNK_PIECE.findall(reply)]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append({**head, "choices": [], "usage": usage})
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
        origin = request.url.origin()
        data = [
            {"url": f"{origin}/images/{uuid.uuid4().hex}.png", "revised_prompt": prompt}
            if fmt == "url"
            else {"b64_json": base64.b64encode(TINY_PNG).decode(), "revised_prompt": prompt}
            for _ in range(count)
        ]
        return web.json_response({"created": int(time.time()), "data": data})

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


async def _serve(
    provider: FakeProvider, host: str, port: int, stop: asyncio.Event, ready: Callable[[str], None]
) -> None:
    """Serve ``provider`` on ``host:port`` until ``stop`` is set; ``ready`` gets the base URL."""
    runner = web.AppRunner(provider.app(), shutdown_timeout=_SHUTDOWN_TIMEOUT, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_port = runner.addresses[0][1]
        ready(f"http://[{host}]:{bound_port}" if ":" in host else f"http://{host}:{bound_port}")
        await stop.wait()
    finally:
        await runner.cleanup()


class FakeProviderServer:
    """Runs a :class:`FakeProvider` in a background thread with its own event loop.

    Use as ``with`` or ``async with``, or call :meth:`start` and :meth:`stop`. Binds a free
    port on 127.0.0.1 unless told otherwise; :attr:`url` is the base URL (no ``/v1``).
    """

    def __init__(
        self,
        provider: FakeProvider | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        self.provider = provider if provider is not None else FakeProvider(latency=latency)
        self._host, self._port = host, port
        self._url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the fake provider server is not running")
        return self._url

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; return once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the fake provider server is already started")
        self._ready.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._run, name="fake-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            self.stop()
            raise RuntimeError("the fake provider server failed to start") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread; idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the loop already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the fake provider server did not stop in time")
        self._thread = self._loop = self._stop = self._url = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()

        def ready(url: str) -> None:
            self._url = url
            self._ready.set()

        await _serve(self.provider, self._host, self._port, self._stop, ready)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # Shortcuts to the provider's state.
    def add_rule(self, **kwargs: Any) -> Rule:
        """See :meth:`FakeProvider.add_rule`."""
        return self.provider.add_rule(**kwargs)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.provider.requests

    def reset(self) -> None:
        self.provider.reset()

    def set_latency(self, seconds: float) -> None:
        self.provider.set_latency(seconds)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the fake provider standalone until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m agentflow_grpc.testing.fake_provider",
        description="A fake OpenAI-compatible provider for tests, benchmarks and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to requests")
    args = parser.parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        provider = FakeProvider(latency=args.latency)

        def ready(url: str) -> None:
            print(f"fake provider listening on {url}", flush=True)

        await _serve(provider, args.host, args.port, stop, ready)

    asyncio.run(run())


if __name__ == "__main__":
    main()
