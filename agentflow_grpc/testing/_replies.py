"""What the fake answers: default replies, documents satisfying a JSON schema, the OpenAI-style
bodies of completions, streamed chunks, images and errors, and the one PNG it serves."""

from __future__ import annotations

import base64
import http
import json
import math
import random
import re
import struct
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import rstr

_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_CHUNK_PIECE = re.compile(r"\s+|\S{1,6}\s*")  # streamed pieces: a short word and its spaces
_FINGERPRINT = "fp_fake"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


TINY_PNG = (  # a valid 1x1 transparent RGBA PNG
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 5))
    + _png_chunk(b"IEND", b"")
)


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


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string or a list of ``{"text": ...}`` parts."""
    if isinstance(content, list):
        parts = (part.get("text") for part in content if isinstance(part, dict))
        return " ".join(text for text in parts if isinstance(text, str))
    return content if isinstance(content, str) else ""


def default_reply(body: Mapping[str, Any], messages: Sequence[Any]) -> str:
    """The reply when no rule scripts one: an echo of the last user message, or a document
    in the requested ``response_format``."""
    last_user = next(
        (
            content_text(m.get("content"))
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


def _head(model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake{uuid.uuid4().hex[:20]}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": _FINGERPRINT,
    }


def token_counts(prompts: Sequence[str], reply: str) -> tuple[int, int]:
    """The prompt's and the reply's tokens, a token being a word."""
    return sum(len(t.split()) for t in prompts), len(reply.split())


def reply_pieces(reply: str) -> list[str]:
    """``reply`` in the pieces a stream sends it in: a short word and its spaces each."""
    return _CHUNK_PIECE.findall(reply)


def _usage(prompts: Sequence[str], reply: str, cache_read: int = 0) -> dict[str, Any]:
    prompt_tokens, completion_tokens = token_counts(prompts, reply)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cache_read:  # OpenAI counts them within prompt_tokens
        usage["prompt_tokens_details"] = {"cached_tokens": min(cache_read, prompt_tokens)}
    return usage


CONTEXT_TOO_LONG = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "9000 tokens. Please reduce the length of the messages."
)


def context_too_long_body() -> dict[str, Any]:
    """OpenAI's 400 for a prompt longer than the model's context."""
    error = {
        "message": CONTEXT_TOO_LONG,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return {"error": error}


def chat_completion(
    model: str, prompts: Sequence[str], reply: str, finish: str = "stop", cache_read: int = 0
) -> dict[str, Any]:
    """A whole ``chat.completion`` answering ``prompts`` (the messages' texts) with ``reply``,
    ending for ``finish`` (an OpenAI finish reason)."""
    message = {"role": "assistant", "content": reply, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {
        **_head(model),
        "object": "chat.completion",
        "choices": [choice],
        "usage": _usage(prompts, reply, cache_read),
    }


def chat_chunks(
    model: str,
    prompts: Sequence[str],
    reply: str,
    *,
    include_usage: bool,
    finish: str = "stop",
    cache_read: int = 0,
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events streaming ``reply`` a short word at a time: the
    role, the pieces, the finish, and the usage when ``include_usage`` (before ``[DONE]``)."""
    head = {**_head(model), "object": "chat.completion.chunk"}
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], **extra}

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in reply_pieces(reply)]
    events.append(chunk({}, finish))
    if include_usage:
        events.append({**head, "choices": [], "usage": _usage(prompts, reply, cache_read)})
    return events


def generated_images(origin: str, prompt: str, count: int, fmt: str) -> dict[str, Any]:
    """An images response: ``count`` copies of :data:`TINY_PNG`, as URLs under ``origin``
    (``fmt`` ``url``) or inline (``b64_json``)."""
    data = [
        {"url": f"{origin}/images/{uuid.uuid4().hex}.png", "revised_prompt": prompt}
        if fmt == "url"
        else {"b64_json": base64.b64encode(TINY_PNG).decode(), "revised_prompt": prompt}
        for _ in range(count)
    ]
    return {"created": int(time.time()), "data": data}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body for an HTTP error ``status``."""
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
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
