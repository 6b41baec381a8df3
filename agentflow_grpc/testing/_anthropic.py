"""Anthropic's Messages API, as the fake provider serves it: the wire format the ``anthropic``
SDK speaks (its ``AsyncAnthropic`` pointed at the fake's root URL, without ``/v1``).

- ``POST /v1/messages``: the key as ``Authorization: Bearer`` (how the SDK sends it) or
  ``x-api-key``, and an ``anthropic-version`` header, as the real API wants (401
  ``authentication_error``, 400 ``invalid_request_error`` without them). The body must name
  ``model``, ``max_tokens`` and non-empty ``messages``, and from API version 2026-10-21 (the
  SDK's) no ``temperature``, ``top_p`` or ``top_k`` ("Extra inputs are not permitted"). The
  reply is a ``message`` object, or with ``"stream": true`` the server-sent events
  ``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``
  (``text_delta``, one short word each), ``content_block_stop``, ``message_delta``
  (``stop_reason``, cumulative ``usage.output_tokens``) and ``message_stop``.
- ``GET /v1/models`` with an ``anthropic-version`` header: Anthropic's model list
  (``data``, ``has_more``, ``first_id``, ``last_id``); without it the OpenAI one answers.

Replies: ``Echo: <last user message>``, or for an ``output_config.format`` of type
``json_schema`` a document satisfying the schema. Rules apply as to OpenAI's paths, rendered in
Anthropic's words: errors as ``{"type": "error", "error": {"type": …, "message": …}}`` (429
``rate_limit_error``, 529 ``overloaded_error``, other 5xx ``api_error``, …) with a
``request-id`` and the rule's ``Retry-After``; ``context_too_long`` as the 400 "prompt is too
long: N tokens > M maximum"; ``finish`` as ``end_turn``, ``max_tokens`` or ``refusal``;
``cache_read_tokens`` as ``cache_read_input_tokens`` (which Anthropic counts apart from
``input_tokens``); a request with a top-level ``cache_control`` has the rest of its prompt
reported as written to the cache (``cache_creation_input_tokens``).
"""

from __future__ import annotations

import http
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from agentflow_grpc.testing._replies import (
    content_text,
    reply_pieces,
    schema_instance,
    token_counts,
)
from agentflow_grpc.testing._rules import Rule

MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
VERSION_HEADER = "anthropic-version"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""Anthropic's error type of each HTTP status it answers with (another 4xx:
``invalid_request_error``, another 5xx: ``api_error``)."""

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
"""A rule's ``finish`` in Anthropic's words (``stop_reason``)."""

CONTEXT_TOO_LONG = "prompt is too long: 208310 tokens > 200000 maximum"
ROLES = ("user", "assistant", "system")
SAMPLING_REMOVED = "2026-10-21"  # the API version that refuses sampling parameters (the SDK's)
SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k")


class Provider(Protocol):
    """What the handlers use of :class:`FakeProvider` (its rules, models and streams)."""

    models: tuple[str, ...]

    async def take_rule(self, path: str, model: str | None, text: str) -> Rule | None: ...

    async def stream(
        self, request: web.Request, rule: Rule | None, events: Sequence[bytes]
    ) -> web.StreamResponse: ...


def handles(request: web.Request) -> bool:
    """Whether ``request`` is one to Anthropic's API: its messages path, or any ``/v1/`` path
    asked with the ``anthropic-version`` header the SDK always sends."""
    return request.path.startswith(MESSAGES_PATH) or (
        request.path.startswith("/v1/") and VERSION_HEADER in request.headers
    )


def refusal(request: web.Request) -> web.Response | None:
    """The real API's answer to a request missing its key or version header, if it does."""
    bearer = request.headers.get("Authorization", "")
    if not request.headers.get("x-api-key") and not (bearer.startswith("Bearer ") and bearer[7:]):
        return error(401, "x-api-key header is required")
    if not request.headers.get(VERSION_HEADER):
        return error(400, f"{VERSION_HEADER}: header is required")
    return None


def error(
    status: int, message: str | None = None, *, retry_after: str | None = None
) -> web.Response:
    """An error in Anthropic's shape, with its ``request-id`` (and ``Retry-After``)."""
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if message is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Overloaded" if status == 529 else f"Error {status}"
        message = f"{phrase} (injected by the fake provider)"
    request_id = f"req_fake{uuid.uuid4().hex[:20]}"
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    headers = {"request-id": request_id}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return web.json_response(body, status=status, headers=headers)


def _rule_error(rule: Rule | None) -> web.Response | None:
    if rule is None:
        return None
    if rule.context_too_long:
        return error(400, CONTEXT_TOO_LONG)
    if rule.status is not None:
        return error(rule.status, rule.message, retry_after=rule.retry_after)
    return None


def _system_text(system: Any) -> str:
    """The text of the ``system`` parameter: a string or a list of text blocks."""
    return content_text(system)


def _invalid(body: Any, version: str) -> str | None:
    """What the real API would say is wrong with a messages request body, if anything."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            return f"{field}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 0:
        return "max_tokens: Input should be a valid integer greater than or equal to 0"
    if version >= SAMPLING_REMOVED:
        for name in SAMPLING_PARAMETERS:
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages.{index}.role: Input should be 'user', 'assistant' or 'system'"
        last = index == len(messages) - 1
        if not content_text(message.get("content")) and not (
            last and message["role"] == "assistant"
        ):
            return (
                f"messages.{index}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
    return None


def _default_reply(body: dict[str, Any]) -> str:
    """``Echo: <last user message>``, or a document of the requested ``json_schema``."""
    output_format = (body.get("output_config") or {}).get("format") or {}
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        return json.dumps(schema_instance(output_format.get("schema", {})))
    last_user = next(
        (
            content_text(m.get("content"))
            for m in reversed(body["messages"])
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    return f"Echo: {last_user[:200]}"


def _usage(
    prompts: Sequence[str], reply: str, cache_read: int, caching: bool = False
) -> dict[str, Any]:
    """Anthropic's ``usage``: ``input_tokens`` are those neither read from nor written to the
    prompt cache, counted apart (``cache_read_input_tokens``,
    ``cache_creation_input_tokens``). A request that asks for caching (``cache_control``) has
    every prompt token it did not read written to the cache."""
    prompt_tokens, output_tokens = token_counts(prompts, reply)
    read = min(cache_read, prompt_tokens)
    written = prompt_tokens - read if caching else 0
    return {
        "input_tokens": prompt_tokens - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(
    model: str,
    prompts: Sequence[str],
    reply: str,
    finish: str = "stop",
    cache_read: int = 0,
    *,
    caching: bool = False,
) -> dict[str, Any]:
    """A whole ``message`` answering ``prompts`` (system and message texts) with ``reply``."""
    return {
        "id": f"msg_fake{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": reply}] if reply else [],
        "stop_reason": STOP_REASONS[finish],
        "stop_sequence": None,
        "usage": _usage(prompts, reply, cache_read, caching),
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def message_events(
    model: str,
    prompts: Sequence[str],
    reply: str,
    finish: str = "stop",
    cache_read: int = 0,
    *,
    caching: bool = False,
) -> list[bytes]:
    """The server-sent events streaming ``reply`` a short word at a time."""
    whole = message(model, prompts, reply, finish, cache_read, caching=caching)
    start = {
        **whole,
        "content": [],
        "stop_reason": None,
        "usage": {**whole["usage"], "output_tokens": 1},
    }
    return [
        _event("message_start", {"message": start}),
        _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        _event("ping", {}),
        *(
            _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}})
            for p in reply_pieces(reply)
        ),
        _event("content_block_stop", {"index": 0}),
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": whole["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": whole["usage"]["output_tokens"]},
            },
        ),
        _event("message_stop", {}),
    ]


def models(provider: Provider) -> dict[str, Any]:
    """Anthropic's list of models (one page)."""
    created = datetime(2025, 1, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    data = [
        {
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": created,
            "lifecycle": "active",
            "deprecated_at": None,
            "retires_at": None,
            "max_input_tokens": 200000,
            "max_tokens": 64000,
        }
        for name in provider.models
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def add_routes(app: web.Application, provider: Provider) -> None:
    """Serve Anthropic's messages path on ``app`` (its model list: :func:`models_handler`)."""

    async def create_message(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if (problem := _invalid(body, request.headers.get(VERSION_HEADER, ""))) is not None:
            return error(400, problem)
        model: str = body["model"]
        prompts = [_system_text(body.get("system"))]
        prompts += [content_text(m.get("content")) for m in body["messages"]]
        rule = await provider.take_rule(request.path, model, "\n".join(prompts))
        if (failure := _rule_error(rule)) is not None:
            return failure
        reply = rule.reply_text() if rule is not None else None
        if reply is None:
            reply = _default_reply(body)
        finish = "stop" if rule is None else rule.finish
        cache_read = 0 if rule is None else rule.cache_read_tokens
        caching = body.get("cache_control") is not None
        if not body.get("stream"):
            whole = message(model, prompts, reply, finish, cache_read, caching=caching)
            return web.json_response(whole)
        events = message_events(model, prompts, reply, finish, cache_read, caching=caching)
        return await provider.stream(request, rule, events)

    app.router.add_post(MESSAGES_PATH, create_message)


def models_handler(
    provider: Provider, otherwise: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``GET /v1/models``: Anthropic's list when the SDK asks (``anthropic-version``), else
    ``otherwise`` (OpenAI's)."""

    async def list_models(request: web.Request) -> web.StreamResponse:
        if VERSION_HEADER not in request.headers:
            return await otherwise(request)
        rule = await provider.take_rule(request.path, None, "")
        if (failure := _rule_error(rule)) is not None:
            return failure
        return web.json_response(models(provider))

    return list_models
