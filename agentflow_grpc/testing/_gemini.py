"""The Gemini API (Google AI, ``v1beta``) as the fake provider serves it: the routes, in Google's
own wire format, that :meth:`FakeProvider.app` adds with :func:`add_gemini_routes`.

- ``POST /v1beta/models/{model}:generateContent``: one ``GenerateContentResponse``.
- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``: server-sent events, each
  ``data: {GenerateContentResponse}`` (CRLF-separated, no ``[DONE]``): the reply's pieces in
  ``candidates[0].content.parts[0].text``, every chunk with ``modelVersion``, ``responseId`` and
  the running ``usageMetadata``; the last with ``finishReason`` and the whole usage.
- ``GET /v1beta/models``: ``{"models": [...], "nextPageToken": ...}`` (``pageSize``,
  ``pageToken``).
- Images: a ``generateContent`` whose ``generationConfig.responseModalities`` holds ``IMAGE``
  (Gemini's image models, e.g. ``gemini-2.5-flash-image``) answers with an ``inlineData`` part
  (base64 PNG, :data:`TINY_PNG`); ``generationConfig.imageConfig`` is checked as Google checks
  it (``aspectRatio``, ``imageSize``).

Authentication as the real API: the key in ``x-goog-api-key`` (or ``?key=``); without one, 403
``PERMISSION_DENIED`` ("Method doesn't allow unregistered callers …"). Errors are Google's
``{"error": {"code", "message", "status"[, "details"]}}``: a rule's ``status`` with its canonical
status name, a 429 with ``QuotaFailure``, ``Help`` and, when the rule gives ``retry_after``,
``RetryInfo.retryDelay`` (the real API says how long to wait only there) as well as the
``Retry-After`` header every fake error carries for the rule; ``context_too_long`` is 400
``INVALID_ARGUMENT`` "The input token count (N) exceeds the maximum number of tokens allowed (M)."

A rule's ``finish`` in Gemini's words: ``stop`` ``STOP``, ``length`` ``MAX_TOKENS``,
``content_filter`` ``SAFETY`` (``IMAGE_SAFETY`` for an image, which then has no data), with the
reply's text if it has any (``reply=""``: a candidate with no content). A rule's
``prompt_blocked`` answers as Gemini does to a prompt its filters refuse:
``promptFeedback.blockReason`` = that reason (``SAFETY``, ``PROHIBITED_CONTENT``, …) and no
candidates. ``cache_read_tokens`` is ``usageMetadata.cachedContentTokenCount`` (within
``promptTokenCount``). Tokens are counted as :func:`token_counts` counts them (a word each; the
system instruction counts).
"""

from __future__ import annotations

import base64
import email.utils
import http
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from agentflow_grpc.testing._replies import TINY_PNG, reply_pieces, schema_instance, token_counts
from agentflow_grpc.testing._rules import Rule

GEMINI_PREFIX = "/v1beta"
GEMINI_MODELS_PATH = GEMINI_PREFIX + "/models"
INPUT_TOKEN_LIMIT = 1_048_576
IMAGE_TOKENS = 1290  # what Gemini's image models report for one 1K image
ASPECT_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
IMAGE_SIZES = frozenset({"1K", "2K", "4K"})
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
UNREGISTERED_CALLER = (
    "Method doesn't allow unregistered callers (callers without established identity). Please "
    "use API Key or other form of API consumer identity to call this API."
)
_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_RATINGS = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
]
_EVENT_END = b"\r\n\r\n"


class _Provider(Protocol):
    """What the routes use of :class:`FakeProvider` (not imported: it imports this module)."""

    models: tuple[str, ...]

    async def take_rule(self, path: str, model: str | None, text: str) -> Rule | None: ...

    async def stream(
        self, request: web.Request, rule: Rule | None, events: Sequence[bytes]
    ) -> web.StreamResponse: ...


def gemini_path(model: str, method: str = "streamGenerateContent") -> str:
    """The path of a model's method, e.g. ``/v1beta/models/fake-model:generateContent``; a
    :class:`Rule`'s ``path`` for calls to it (the query, ``?alt=sse``, is not part of it)."""
    return f"{GEMINI_MODELS_PATH}/{model}:{method}"


def add_gemini_routes(app: web.Application, provider: _Provider) -> None:
    routes = _Routes(provider)
    app.router.add_get(GEMINI_MODELS_PATH, routes.models)
    app.router.add_post(GEMINI_MODELS_PATH + "/{call}", routes.call)


def gemini_refusal(request: web.Request, *, invalid_json: bool) -> web.Response | None:
    """What the API answers before looking at a request (the fake's middleware asks for every
    path under ``/v1beta``): 403 without an API key, 400 for a body that is not JSON."""
    if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
        return gemini_error(403, UNREGISTERED_CALLER)
    if invalid_json:
        return gemini_error(400, "Invalid JSON payload received. Unexpected token.")
    return None


def _retry_delay(retry_after: str) -> float | None:
    """A rule's ``retry_after`` (seconds or an HTTP-date) as seconds from now."""
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _duration(seconds: float) -> str:
    """A protobuf ``Duration`` in JSON: ``"7s"``, ``"0.5s"``."""
    return f"{seconds:.0f}s" if seconds == math.floor(seconds) else f"{seconds:.3f}s"


def gemini_error(
    status: int, message: str | None = None, *, retry_after: str | None = None
) -> web.Response:
    """Google's error body for ``status``; a 429 with the details the Gemini API gives."""
    if message is None:
        try:
            message = _MESSAGES.get(status) or http.HTTPStatus(status).phrase
        except ValueError:
            message = f"Error {status}"
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUSES.get(status, "UNKNOWN"),
    }
    if status == 429:
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_"
                        "free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
        ]
        delay = None if retry_after is None else _retry_delay(retry_after)
        if delay is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": _duration(delay),
                }
            )
        error["details"] = details
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response({"error": error}, status=status, headers=headers)


def context_too_long_error() -> web.Response:
    tokens = INPUT_TOKEN_LIMIT + 51_717
    return gemini_error(
        400,
        f"The input token count ({tokens}) exceeds the maximum number of tokens allowed "
        f"({INPUT_TOKEN_LIMIT}).",
    )


def _rule_error(rule: Rule | None) -> web.Response | None:
    if rule is None:
        return None
    if rule.context_too_long:
        return context_too_long_error()
    if rule.status is not None:
        return gemini_error(rule.status, rule.message, retry_after=rule.retry_after)
    return None


def _texts(content: Any) -> list[str]:
    """The texts of a ``Content``'s parts."""
    if not isinstance(content, Mapping):
        return []
    parts = content.get("parts")
    if not isinstance(parts, list):
        return []
    return [p["text"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("text"), str)]


def _lower_types(schema: Any) -> Any:
    """An OpenAPI-style ``responseSchema`` (``"type": "OBJECT"``) as JSON Schema's words."""
    if isinstance(schema, Mapping):
        return {
            key: value.lower() if key == "type" and isinstance(value, str) else _lower_types(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(item) for item in schema]
    return schema


def _default_reply(generation: Mapping[str, Any], last_user: str) -> str:
    """An echo of the last user text, or, in JSON mode, a document satisfying the schema."""
    if generation.get("responseMimeType") == "application/json":
        if isinstance(schema := generation.get("responseJsonSchema"), Mapping):
            return json.dumps(schema_instance(schema))
        if isinstance(schema := generation.get("responseSchema"), Mapping):
            return json.dumps(schema_instance(_lower_types(schema)))
        return json.dumps({"echo": last_user})
    return f"Echo: {last_user[:200]}"


def _usage(
    prompt_tokens: int, output_tokens: int, cache_read: int, *, modality: str = "TEXT"
) -> dict[str, Any]:
    """``usageMetadata``; proto3 JSON leaves zero counts out."""
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens}
    if output_tokens:
        usage["candidatesTokenCount"] = output_tokens
    usage["totalTokenCount"] = prompt_tokens + output_tokens
    if cached := min(cache_read, prompt_tokens):
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if output_tokens:
        usage["candidatesTokensDetails"] = [{"modality": modality, "tokenCount": output_tokens}]
    return usage


class _Call:
    """One ``generateContent`` request, read."""

    def __init__(self, model: str, body: Mapping[str, Any]) -> None:
        self.model = model
        self.response_id = uuid.uuid4().hex[:22]
        contents = body.get("contents")
        self.contents: list[Any] = contents if isinstance(contents, list) else []
        generation = body.get("generationConfig")
        self.generation: Mapping[str, Any] = generation if isinstance(generation, Mapping) else {}
        self.system = _texts(body.get("systemInstruction"))
        self.texts = [text for content in self.contents for text in _texts(content)]
        self.last_user = next(
            (
                " ".join(_texts(c))
                for c in reversed(self.contents)
                if isinstance(c, Mapping) and c.get("role", "user") == "user"
            ),
            "",
        )
        modalities = self.generation.get("responseModalities")
        self.modalities = [m for m in modalities if isinstance(m, str)] if modalities else []

    def invalid(self) -> web.Response | None:
        """The 400 the API gives a request it cannot take."""
        if not self.contents:
            return gemini_error(400, "* GenerateContentRequest.contents: contents is not specified")
        for content in self.contents:
            if not isinstance(content, Mapping) or content.get("role", "user") not in (
                "user",
                "model",
            ):
                return gemini_error(400, "Please use a valid role: user, model.")
        image_config = self.generation.get("imageConfig") or {}
        ratio = image_config.get("aspectRatio")
        if ratio is not None and ratio not in ASPECT_RATIOS:
            return gemini_error(400, f"Unsupported aspect ratio: {ratio}")
        size = image_config.get("imageSize")
        if size is not None and size not in IMAGE_SIZES:
            return gemini_error(400, f"Unsupported image size: {size}")
        return None

    @property
    def wants_image(self) -> bool:
        return any(m.upper() == "IMAGE" for m in self.modalities)

    @property
    def prompt_text(self) -> str:
        return "\n".join([*self.system, *self.texts])

    def prompt_tokens(self) -> int:
        return token_counts([*self.system, *self.texts], "")[0]

    def head(self) -> dict[str, Any]:
        return {"modelVersion": self.model, "responseId": self.response_id}

    def blocked(self, reason: str, cache_read: int) -> dict[str, Any]:
        """Gemini's answer to a prompt its filters refuse: no candidates."""
        return {
            "promptFeedback": {"blockReason": reason, "safetyRatings": _RATINGS},
            "usageMetadata": _usage(self.prompt_tokens(), 0, cache_read),
            **self.head(),
        }

    def candidate(self, text: str | None, finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {}
        if text is not None:
            candidate["content"] = {"parts": [{"text": text}], "role": "model"}
        if finish is not None:
            candidate["finishReason"] = finish
            if finish == "SAFETY":
                candidate["safetyRatings"] = _RATINGS
        candidate["index"] = 0
        return candidate

    def whole(self, reply: str, finish: str, cache_read: int) -> dict[str, Any]:
        """The ``generateContent`` answer."""
        text = reply if reply or finish != "SAFETY" else None
        prompt, output = token_counts([*self.system, *self.texts], reply)
        return {
            "candidates": [self.candidate(text, finish)],
            "usageMetadata": _usage(prompt, output, cache_read),
            **self.head(),
        }

    def chunks(self, reply: str, finish: str, cache_read: int) -> list[dict[str, Any]]:
        """The ``streamGenerateContent`` events: a piece of the reply each; the last one with
        the finish and the whole usage (the others with the prompt's)."""
        prompt, output = token_counts([*self.system, *self.texts], reply)
        pieces: list[str | None] = list(reply_pieces(reply))
        if not pieces:
            pieces = [None if finish == "SAFETY" else ""]
        events = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            usage = _usage(prompt, output, cache_read) if last else _usage(prompt, 0, cache_read)
            candidate = self.candidate(piece, finish if last else None)
            events.append({"candidates": [candidate], "usageMetadata": usage, **self.head()})
        return events

    def image(self, finish: str, cache_read: int) -> dict[str, Any]:
        """An image model's answer: the PNG inline, or, filtered, ``IMAGE_SAFETY`` and none."""
        prompt = self.prompt_tokens()
        if finish == "SAFETY":
            candidate: dict[str, Any] = {"finishReason": "IMAGE_SAFETY", "index": 0}
            return {
                "candidates": [candidate],
                "usageMetadata": _usage(prompt, 0, cache_read),
                **self.head(),
            }
        data = base64.b64encode(TINY_PNG).decode()
        parts: list[dict[str, Any]] = [{"inlineData": {"mimeType": "image/png", "data": data}}]
        if any(m.upper() == "TEXT" for m in self.modalities):
            parts.insert(0, {"text": "Here is the image you asked for."})
        candidate = {"content": {"parts": parts, "role": "model"}, "finishReason": finish}
        return {
            "candidates": [{**candidate, "index": 0}],
            "usageMetadata": _usage(prompt, IMAGE_TOKENS, cache_read, modality="IMAGE"),
            **self.head(),
        }


def _model_resource(model: str) -> dict[str, Any]:
    return {
        "name": f"models/{model}",
        "version": "001",
        "displayName": model,
        "description": "A model of the fake provider.",
        "inputTokenLimit": INPUT_TOKEN_LIMIT,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
    }


class _Routes:
    def __init__(self, provider: _Provider) -> None:
        self._provider = provider

    async def models(self, request: web.Request) -> web.StreamResponse:
        rule = await self._provider.take_rule(request.path, None, "")
        if (failure := _rule_error(rule)) is not None:
            return failure
        try:
            size = int(request.query.get("pageSize", "50"))
            start = int(request.query.get("pageToken") or "0")
        except ValueError:
            return gemini_error(400, "Invalid pageSize or pageToken.")
        size = min(max(size, 1), 1000)
        models = self._provider.models
        page: dict[str, Any] = {"models": [_model_resource(m) for m in models[start:][:size]]}
        if start + size < len(models):
            page["nextPageToken"] = str(start + size)
        return web.json_response(page)

    async def call(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["call"].rpartition(":")
        if not model or method not in ("generateContent", "streamGenerateContent"):
            return gemini_error(404, f"Method not found: {request.match_info['call']}.")
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            # Without alt=sse the API streams one JSON array; the SDK always asks for SSE.
            return gemini_error(400, "The fake serves streamGenerateContent with ?alt=sse only.")
        body = await request.json()
        if not isinstance(body, Mapping):
            return gemini_error(400, "Invalid JSON payload received. Expected an object.")
        call = _Call(model, body)
        if (invalid := call.invalid()) is not None:
            return invalid
        rule = await self._provider.take_rule(request.path, model, call.prompt_text)
        if (failure := _rule_error(rule)) is not None:
            return failure
        finish = FINISH_REASONS["stop" if rule is None else rule.finish]
        cache_read = 0 if rule is None else rule.cache_read_tokens
        if call.wants_image:
            return web.json_response(call.image(finish, cache_read))
        reply = rule.reply_text() if rule is not None else None
        if reply is None:
            reply = _default_reply(call.generation, call.last_user)
        answers: list[dict[str, Any]]
        if rule is not None and rule.prompt_blocked is not None:
            answers = [call.blocked(rule.prompt_blocked, cache_read)]
        elif stream:
            answers = call.chunks(reply, finish, cache_read)
        else:
            answers = [call.whole(reply, finish, cache_read)]
        if not stream:
            return web.json_response(answers[0])
        events = [b"data: " + json.dumps(answer).encode() + _EVENT_END for answer in answers]
        return await self._provider.stream(request, rule, events)
