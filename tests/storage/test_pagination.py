"""Page tokens: opaque, bound to the filters they were issued for, refused when tampered with."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.records import etag_of, revision_of
from agentflow_grpc.storage.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_token,
    encode_token,
    page_size,
)

KINDS = (datetime, uuid.UUID)


def test_a_token_round_trips_its_sort_key() -> None:
    key = [datetime(2026, 12, 1, 8, 30, 1, 123456, tzinfo=UTC), uuid.uuid4()]
    token = encode_token(key, {"status": ["failed"]})
    assert decode_token(token, {"status": ["failed"]}, kinds=KINDS) == key
    assert "=" not in token
    assert "/" not in token
    assert "+" not in token


def test_a_token_is_refused_with_other_filters() -> None:
    token = encode_token([1], {"workflow": "a"})
    with pytest.raises(InvalidArgumentError, match="other filters") as refused:
        decode_token(token, {"workflow": "b"}, kinds=(int,))
    assert refused.value.field == "page_token"


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(json.dumps({"k": [1]}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2]).encode()).decode(),
    ],
)
def test_garbage_tokens_are_invalid_arguments(token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not a token this list issued"):
        decode_token(token, {}, kinds=(int,))


def test_tampered_key_values_are_refused() -> None:
    filters: dict[str, object] = {}
    good = json.loads(base64.urlsafe_b64decode(encode_token([1], filters) + "=="))
    for forged in (["x"], [True], [1, 2], ["2026-01-01T00:00:00"]):
        raw = json.dumps({"k": forged, "f": good["f"]}).encode()
        token = base64.urlsafe_b64encode(raw).decode()
        kinds = (datetime,) if isinstance(forged[0], str) and "T" in forged[0] else (int,)
        with pytest.raises(InvalidArgumentError):
            decode_token(token, filters, kinds=kinds)


def test_page_sizes() -> None:
    assert page_size(0) == DEFAULT_PAGE_SIZE
    assert page_size(7) == 7
    assert page_size(MAX_PAGE_SIZE * 10) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgumentError) as negative:
        page_size(-1)
    assert negative.value.field == "page_size"


def test_etags() -> None:
    assert revision_of(etag_of(42)) == 42
    assert etag_of(42) == "42"
    assert revision_of('W/"42"') == revision_of('"42"') == 42
    for bad in ("v42", '"x"', "", '"' + "9" * 30 + '"', "-1"):
        with pytest.raises(InvalidArgumentError) as invalid:
            revision_of(bad)
        assert invalid.value.field == "etag"
