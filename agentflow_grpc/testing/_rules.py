"""Scripted behaviour (:class:`Rule`), which request a rule applies to, and the request log."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


class _Unset(enum.Enum):
    UNSET = enum.auto()


@dataclass
class Rule:
    """A scripted behaviour, applied when every given match criterion holds.

    Match criteria (``None`` matches anything): ``model`` equals the request's model;
    ``contains`` is a substring of the concatenated message contents (or the image prompt);
    ``path`` equals the request path, e.g. :data:`CHAT_PATH`.

    Effects: ``reply`` is the assistant's text, or ``json`` any JSON value sent serialized as
    the text (images ignore both); ``status`` answers with that HTTP error status and an error
    body in the wire format of the API called (OpenAI's, Anthropic's, Gemini's; ``message``
    overrides its text) and ``retry_after`` as its ``Retry-After`` header (seconds or an
    HTTP-date, sent as given); ``context_too_long`` answers 400 saying, as the API called does,
    that the prompt exceeds the model's context; ``finish`` ends the reply for that reason,
    in the API's own words (``length``: OpenAI's ``length``, Anthropic's ``max_tokens``,
    Gemini's ``MAX_TOKENS``; ``content_filter``: ``content_filter``, ``refusal``, ``SAFETY``);
    ``cache_read_tokens`` reports that many prompt tokens as read from the provider's prompt
    cache; ``prompt_blocked`` refuses the prompt before any reply, for that reason, where the
    API says so apart from a filtered reply (Gemini's ``promptFeedback.blockReason``: ``SAFETY``,
    ``PROHIBITED_CONTENT``, …); ``delay`` waits that many seconds before responding, errors
    included; ``chunk_delay`` waits between streamed chunks; the rule is exhausted after ``times``
    matches (``None``: never).
    """

    model: str | None = None
    contains: str | None = None
    path: str | None = None
    reply: str | None = None
    json: Any = _Unset.UNSET
    status: int | None = None
    message: str | None = None
    retry_after: str | None = None
    context_too_long: bool = False
    finish: Literal["stop", "length", "content_filter"] = "stop"
    cache_read_tokens: int = 0
    prompt_blocked: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    times: int | None = None
    hits: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), not {self.status}")
        if self.finish not in ("stop", "length", "content_filter"):
            raise ValueError(f"finish must be stop, length or content_filter, not {self.finish}")
        if self.cache_read_tokens < 0:
            raise ValueError("cache_read_tokens must not be negative")
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


def claim(rules: Iterable[Rule], path: str, model: str | None, text: str) -> Rule | None:
    """The first live rule matching the request, its hit counted; ``None`` if none matches.

    Not thread-safe: the caller holds the lock guarding ``rules``.
    """
    rule = next((r for r in rules if not r.exhausted and r.matches(path, model, text)), None)
    if rule is not None:
        rule.hits += 1
    return rule


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received; ``body`` is its parsed JSON (``None`` if none, text if bad)."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]
    time: float  # time.time() on arrival
