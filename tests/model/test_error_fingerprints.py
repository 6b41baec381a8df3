"""Error fingerprints: messages that differ only in what varies between occurrences of one cause
(ids, numbers, times, addresses, long quoted data) share a pattern and a group; another code,
node type or wording is another group."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow_grpc.model.error_fingerprints import PATTERN_LIMIT, fingerprint, message_pattern
from agentflow_grpc.model.error_groups import MESSAGE_LIMIT, ErrorKind, NewOccurrence

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)

# Templates of real messages: each hole takes a value that varies from one occurrence to the next.
TEMPLATES = [
    "execution {uuid} of workflow {uuid} failed",
    "the attempt took longer than {duration}",
    "cannot reach the provider: connection to {ip} refused after {int} tries",
    "HTTP 429: Rate limit reached: limit {int}, used {int}, requested {decimal}",
    "object at {hex} is not JSON serializable",
    "request {token} failed at {time}",
    "the model's reply is not JSON: Expecting value at {int} (reply starts: {long_quote})",
    "row {int} of {int}: value {decimal} is out of range",
]

_HEX_ID = st.from_regex(r"0x[0-9a-f]{8,16}", fullmatch=True).filter(
    lambda text: re.search(r"\d", text[2:]) is not None
)
VALUES = {
    "uuid": st.uuids().map(str),
    "duration": st.builds(
        "{}{}{}".format,
        st.decimals(0, 10_000, places=2, allow_nan=False).map(str),
        st.sampled_from(["", " "]),
        st.sampled_from(["s", "ms", "seconds", "min"]),
    ),
    "ip": st.ip_addresses(v=4).map(str)
    | st.builds("{}:{}".format, st.ip_addresses(v=4), st.integers(1, 65535))
    | st.builds("[{}]:{}".format, st.ip_addresses(v=6), st.integers(1, 65535)),
    "int": st.integers(-(10**12), 10**12).map(str),
    "decimal": st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False).map(str),
    "hex": _HEX_ID,
    "token": st.from_regex(r"req_[a-z]{4}[0-9]{6}[A-Za-z0-9]{6}", fullmatch=True),
    "time": st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
    "long_quote": st.text(
        st.characters(whitelist_categories=("L", "Nd", "Zs")), min_size=40, max_size=80
    ).map(lambda text: repr(text.strip().replace("'", "") + " and more words")),
}
_HOLE = re.compile(r"\{(\w+)\}")


@st.composite
def filled(draw: st.DrawFn, template: str) -> str:
    return _HOLE.sub(lambda hole: draw(VALUES[hole.group(1)]), template)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), template=st.sampled_from(TEMPLATES))
def test_messages_that_differ_only_in_ids_and_numbers_share_a_group(
    data: st.DataObject, template: str
) -> None:
    first, second = data.draw(filled(template)), data.draw(filled(template))
    assert message_pattern(first) == message_pattern(second), (first, second)
    one = NewOccurrence(ErrorKind.NODE_ATTEMPT, "provider.error", first, T0, node_type="llm")
    two = NewOccurrence(ErrorKind.NODE_ATTEMPT, "provider.error", second, T0, node_type="llm")
    assert one.fingerprint == two.fingerprint


@settings(max_examples=60, deadline=None)
@given(
    message=st.text(max_size=300),
    code=st.sampled_from(["provider.rate_limited", "provider.rejected", "internal"]),
    other_code=st.sampled_from(["node.deadline_exceeded", "http.timeout"]),
    node_type=st.sampled_from(["llm", "http", ""]),
    other_type=st.sampled_from(["database", "router", "plugin"]),
)
def test_another_code_or_node_type_is_another_group(
    message: str, code: str, other_code: str, node_type: str, other_type: str
) -> None:
    pattern = message_pattern(message)
    assert re.fullmatch("[0-9a-f]{32}", fingerprint(code, node_type, pattern))
    assert fingerprint(code, node_type, pattern) == fingerprint(code, node_type, pattern)
    assert fingerprint(code, node_type, pattern) != fingerprint(other_code, node_type, pattern)
    assert fingerprint(code, node_type, pattern) != fingerprint(code, other_type, pattern)
    # The parts are length-prefixed: moving text from one part to the next is another group.
    assert fingerprint("ab", "c", pattern) != fingerprint("a", "bc", pattern)


@pytest.mark.parametrize(
    ("message", "pattern"),
    [
        (
            f"execution {uuid.UUID(int=7)} failed at 2026-12-04T10:00:00.123Z",
            "execution <uuid> failed at <time>",
        ),
        ("the attempt took longer than 2.5 s", "the attempt took longer than <duration>"),
        ("took 150ms, then 3 minutes", "took <duration>, then <duration>"),
        ("value -5 and 3.14 and 1e-9 at 12.", "value <num> and <num> and <num> at <num>."),
        ("cannot reach 10.0.0.12:5432 or [::1]:8080", "cannot reach <ip> or <ip>"),
        ("address fe80::1ff:fe23:4567:890a is down", "address <ip> is down"),
        ("object at 0x7f3a2b1c9d80, id deadbeef12", "object at <hex>, id <hex>"),
        ("request chatcmpl-AbC123dEf456GhI789 failed", "request <id> failed"),
        ("HTTP 404: not found", "HTTP 404: not found"),
        ("Error code: 400 - status 503", "Error code: 400 - status 503"),
        # Digits inside a word are part of a name.
        ("gpt-4o and gpt-4 on v1 from orders_2024", "gpt-4o and gpt-4 on v1 from orders_2024"),
        # Short quoted text names the cause; long quoted text is data.
        ("KeyError: 'answer'", "KeyError: 'answer'"),
        ('relation "orders" does not exist', 'relation "orders" does not exist'),
        (
            "reply starts: 'Sure! Here is everything you asked for, and more'",
            "reply starts: '<text>'",
        ),
        ("the model's reply isn't JSON", "the model's reply isn't JSON"),
        ("a  message\n\twith   spaces ", "a message with spaces"),
        ("a word like deadbeef stays", "a word like deadbeef stays"),
    ],
)
def test_what_is_replaced_and_what_is_kept(message: str, pattern: str) -> None:
    assert message_pattern(message) == pattern


def test_different_wording_is_a_different_group() -> None:
    assert message_pattern("HTTP 400: model not found") != message_pattern(
        "HTTP 400: context length exceeded"
    )
    assert message_pattern("HTTP 400: bad") != message_pattern("HTTP 404: bad")


def test_an_occurrence_bounds_its_message_and_pattern_and_drops_nul_characters() -> None:
    long = NewOccurrence(ErrorKind.EXECUTION, "internal", "x " * 10_000, T0)
    assert len(long.message) == MESSAGE_LIMIT
    assert len(long.message_pattern) <= PATTERN_LIMIT
    odd = NewOccurrence(ErrorKind.INTERNAL, "internal", "bad\x00byte", T0, stack="a\x00b")
    assert (odd.message, odd.stack) == ("bad\ufffdbyte", "a\ufffdb")
    assert odd.fingerprint == fingerprint("internal", "", "bad\ufffdbyte")
