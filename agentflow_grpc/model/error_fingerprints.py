"""An error group's fingerprint: the error code, the node type and the message with what varies
from one occurrence to the next (ids, numbers, times, addresses) replaced, hashed.

`message_pattern(message)` applies the rules below in this order, each to what the ones before
left (docs/observability.md lists them with examples):

1. quoted text ('…' or "…") longer than 32 characters → `'<text>'` (a reply's start, a body,
   a statement: data); shorter quoted text is kept, as it usually names the cause (a
   provider's `'type': 'invalid_request_error'`, a relation, a key);
2. ISO 8601 dates and times → `<time>`;
3. UUIDs → `<uuid>`;
4. IPv4 addresses (with a port), bracketed or bare IPv6 addresses → `<ip>`;
5. `0x` and hexadecimal digits, or a run of 8 or more hexadecimal digits holding both a letter
   and a decimal digit → `<hex>` (a run of decimal digits is a number, below);
6. tokens of 16 or more letters, digits, `_` or `-` mixing letters and digits (request ids,
   `chatcmpl-…`) → `<id>`;
7. durations, a number and a unit (`2.5 s`, `30s`, `150 ms`, `3 minutes`) → `<duration>`;
8. numbers (integers, decimals, exponents, a leading `-`) → `<num>`; except an HTTP status
   after `HTTP`, `status` or `Error code:` (`HTTP 429` stays: 400 and 404 are different
   causes), and digits inside a word (`gpt-4o`, `v1`, `orders_2024`, `gpt-4`);
9. whitespace runs → one space; the pattern is cut to 1000 characters.

`fingerprint(code, node_type, pattern)`: 32 hex digits, BLAKE2b (16 bytes) of the three.
Pure: no I/O, nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import re

PATTERN_LIMIT = 1000
QUOTED_LIMIT = 32

# A quote opens where no letter or digit precedes it (so `model's` opens none) and closes where
# none follows.
_QUOTED = re.compile(r"""(?<!\w)(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")(?!\w)""")
_TIME = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
)
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])")
_IPV6_BRACKETED = re.compile(r"\[[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\](?::\d{1,5})?")
_IPV6 = re.compile(
    r"(?<![\w:])(?=[0-9a-fA-F:]*[0-9a-fA-F])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])"
)
_EXPONENT = r"(?!\d+[eE][-+]?\d+(?![\w-]))"  # 12345678e9 is a number, not an id
_HEX = re.compile(
    r"(?<![\w.-])(?:0x[0-9a-fA-F]+|"
    + _EXPONENT
    + r"(?=\d*[a-fA-F])(?=[a-fA-F]*\d)[0-9a-fA-F]{8,})(?![\w-])"
)
_TOKEN = re.compile(
    r"(?<![\w.-])" + _EXPONENT + r"(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{16,}(?![\w-])"
)
_NUMBER = r"(?:(?<![\w.])(?<!\w-)-)?(?<![\w.])(?<!\w-)\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_UNITS = r"(?:ns|µs|us|ms|s|secs?|seconds?|m|mins?|minutes?|h|hours?)"
_DURATION = re.compile(_NUMBER + r"\s?" + _UNITS + r"(?![\w])")
_STATUS_OR_NUMBER = re.compile(
    r"(?P<status>\b(?:HTTP|[Ss]tatus(?: code)?:?|[Ee]rror code:?)\s+[1-5]\d\d\b)"
    r"|(?P<number>" + _NUMBER + r"(?![\w]))"
)
_SPACES = re.compile(r"\s+")


def message_pattern(message: str) -> str:
    """`message` with what varies between occurrences of one cause replaced (module doc)."""
    text = _QUOTED.sub(_long_quoted, message)
    text = _TIME.sub("<time>", text)
    text = _UUID.sub("<uuid>", text)
    text = _IPV4.sub("<ip>", text)
    text = _IPV6_BRACKETED.sub("<ip>", text)
    text = _IPV6.sub("<ip>", text)
    text = _HEX.sub("<hex>", text)
    text = _TOKEN.sub("<id>", text)
    text = _DURATION.sub("<duration>", text)
    text = _STATUS_OR_NUMBER.sub(_number, text)
    return _SPACES.sub(" ", text).strip()[:PATTERN_LIMIT]


def fingerprint(code: str, node_type: str, pattern: str) -> str:
    """32 hex digits naming the group of errors with this code, node type and pattern."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (code, node_type, pattern):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(4, "big"))  # no two splits of one text collide
        digest.update(encoded)
    return digest.hexdigest()


def _long_quoted(match: re.Match[str]) -> str:
    quoted = match.group(0)
    if len(quoted) - 2 <= QUOTED_LIMIT:
        return quoted
    return f"{quoted[0]}<text>{quoted[0]}"


def _number(match: re.Match[str]) -> str:
    return match.group("status") or "<num>"
