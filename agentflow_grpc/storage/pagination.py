"""Keyset pagination: a page size and an opaque page token.

A token holds the sort key of the last row of the page before it, and a fingerprint of the
filters it was made for: a token is refused with other filters (AIP-158), rather than giving
a page of a different list. Pages are read with `WHERE (created_at, id) < ($t, $id)`, so a
page costs the same however deep it is, and rows added meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from agentflow_grpc.model.errors import InvalidArgumentError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    items: list[Item]
    next_page_token: str  # empty on the last page


def page_size(requested: int) -> int:
    """0 means the default; sizes above the maximum are cut to it; negative sizes are refused."""
    if requested < 0:
        raise InvalidArgumentError(
            f"page_size must not be negative, got {requested}", field="page_size"
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def continue_after(token: str, filters: dict[str, Any], *, kinds: Sequence[type]) -> list[Any]:
    """The sort key the page after `token` starts below; all None for the first page."""
    return decode_token(token, filters, kinds=kinds) if token else [None] * len(kinds)


def page_of(
    fetched: list[Item], limit: int, filters: dict[str, Any], key: Callable[[Item], list[Any]]
) -> Page[Item]:
    """A page from `limit + 1` fetched items: the extra one only says another page follows."""
    items = fetched[:limit]
    more = len(fetched) > limit
    return Page(items, encode_token(key(items[-1]), filters) if more else "")


def by_creation(item: Any) -> list[Any]:
    """The sort key of lists ordered newest first: (created_at, id)."""
    return [item.created_at, item.id]


def fingerprint(filters: dict[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_token(key: Sequence[Any], filters: dict[str, Any]) -> str:
    document = {"k": [_encode_value(value) for value in key], "f": fingerprint(filters)}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, filters: dict[str, Any], *, kinds: Sequence[type]) -> list[Any]:
    """The sort key in `token`, its parts of `kinds` (datetime, uuid.UUID, int, str)."""
    invalid = InvalidArgumentError("page_token is not a token this list issued", field="page_token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
        values = document["k"]
        made_for = document["f"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid from None
    if made_for != fingerprint(filters):
        raise InvalidArgumentError(
            "page_token was issued for other filters; repeat the request's filters, or start "
            "again without a token",
            field="page_token",
        )
    if not isinstance(values, list) or len(values) != len(kinds):
        raise invalid
    try:
        return [_decode_value(value, kind) for value, kind in zip(values, kinds, strict=True)]
    except (ValueError, TypeError):
        raise invalid from None


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _decode_value(value: Any, kind: type) -> Any:
    if kind is datetime:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed
    if kind is uuid.UUID:
        return uuid.UUID(value)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("not an int")
        return value
    if not isinstance(value, kind):
        raise TypeError(f"not a {kind.__name__}")
    return value
