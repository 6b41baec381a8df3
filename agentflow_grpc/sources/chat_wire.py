"""Chat completions as JSON: the request the SDK sends as is, and what a completion or a
streamed chunk holds, read from the decoded JSON.

`OpenAICompatibleSource` calls `/chat/completions` through the SDK's `post` (its HTTP client,
SSE decoding, error mapping and Azure deployment routing) with `cast_to=object`, so the SDK hands
over each decoded JSON object instead of building pydantic models for it (a model per streamed
chunk, and a walk of the request's parameters against their TypedDicts: about a tenth of a
streamed run's CPU, #16). Compatible servers differ in what they leave out (`choices: []` in the
usage chunk, `delta: null`, `usage: null`), so every field is optional here; a field of the
wrong type counts as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai

from agentflow_grpc.model.events import TokenUsage

ChunkStream = openai.AsyncStream[object]  # `stream_cls` of a raw streamed call
# The API key as a bearer token and no other credential (as the SDK's `chat.completions.create`
# says it; the default would also allow an admin key from OPENAI_ADMIN_KEY).
BEARER: openai.RequestOptions = {"security": {"bearer_auth": True}}


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one streamed chunk (or a whole completion's first choice) says."""

    model: str | None
    content: str | None
    finish_reason: str | None
    usage: TokenUsage | None
    has_choice: bool


def read_chunk(data: object) -> Chunk:
    """A `chat.completion.chunk`: its model, its first choice's delta text and finish reason,
    its usage."""
    return _read(data, "delta")


def read_completion(data: object) -> Chunk:
    """A `chat.completion`: the same, from the first choice's message."""
    return _read(data, "message")


def read_usage(data: object) -> TokenUsage | None:
    if not isinstance(data, dict):
        return None
    prompt = _count(data.get("prompt_tokens"))
    completion = _count(data.get("completion_tokens"))
    total = data.get("total_tokens")
    details = data.get("prompt_tokens_details")  # OpenAI's prompt cache: within prompt_tokens
    cache_read = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return TokenUsage(
        prompt,
        completion,
        _count(total) if total is not None else prompt + completion,
        cache_read_tokens=cache_read,
    )


def _read(data: object, part: str) -> Chunk:
    if not isinstance(data, dict):
        return Chunk(None, None, None, None, has_choice=False)
    model = data.get("model")
    usage = read_usage(data.get("usage"))
    choices = data.get("choices")
    choice: Any = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        return Chunk(_text(model), None, None, usage, has_choice=False)
    said = choice.get(part)
    content = said.get("content") if isinstance(said, dict) else None
    return Chunk(
        _text(model), _text(content), _text(choice.get("finish_reason")), usage, has_choice=True
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
