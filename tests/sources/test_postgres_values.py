"""`to_json_value`: every value asyncpg returns becomes strict JSON (no NaN, no Python objects)."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import json
import uuid
from typing import Any

import pytest

from agentflow_grpc.sources.postgres import to_json_value

UTC = dt.UTC
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("text", "text"),
        (True, True),
        (False, False),
        (42, 42),
        (2**63 - 1, 2**63 - 1),
        (1.5, 1.5),
        (-0.25, -0.25),
        (decimal.Decimal("129.00"), 129),
        (decimal.Decimal("1E+2"), 100),
        (decimal.Decimal("-0"), 0),
        (decimal.Decimal("45.99"), 45.99),
        (decimal.Decimal("NaN"), "NaN"),
        (decimal.Decimal("Infinity"), "Infinity"),
        (decimal.Decimal("-Infinity"), "-Infinity"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (dt.date(2024, 2, 3), "2024-02-03"),
        (dt.datetime(2024, 2, 3, 10, 0, tzinfo=UTC), "2024-02-03T10:00:00+00:00"),
        (dt.datetime(2024, 2, 3, 10, 0, 0, 500), "2024-02-03T10:00:00.000500"),
        (dt.time(12, 30, 5), "12:30:05"),
        (dt.time(12, 30, tzinfo=PLUS_TWO), "12:30:00+02:00"),
        (dt.timedelta(days=1, seconds=2), 86402.0),
        (uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (b"\x0a\xff", "0aff"),
        (memoryview(b"\x01"), "01"),
        (ipaddress.ip_address("10.0.0.1"), "10.0.0.1"),
        (ipaddress.ip_network("10.0.0.0/8"), "10.0.0.0/8"),
    ],
)
def test_a_scalar_becomes_its_json_form(value: Any, expected: Any) -> None:
    converted = to_json_value(value)
    assert converted == expected
    assert type(converted) is type(expected)


def test_containers_are_converted_all_the_way_down() -> None:
    value = {
        "days": [dt.date(2024, 1, 2), None],
        "pair": (decimal.Decimal("1.5"), decimal.Decimal("NaN")),
        "nested": {1: {"at": dt.datetime(2024, 1, 1, tzinfo=UTC)}},
    }
    assert to_json_value(value) == {
        "days": ["2024-01-02", None],
        "pair": [1.5, "NaN"],
        "nested": {"1": {"at": "2024-01-01T00:00:00+00:00"}},
    }


def test_an_integral_decimal_larger_than_a_float_keeps_every_digit() -> None:
    big = decimal.Decimal("123456789012345678901234567890")
    assert to_json_value(big) == 123456789012345678901234567890


@pytest.mark.parametrize(
    "value",
    [
        decimal.Decimal("NaN"),
        float("inf"),
        [decimal.Decimal("-Infinity"), dt.timedelta(0)],
        {"at": dt.time(0, 0), "raw": b""},
    ],
)
def test_the_result_is_strict_json(value: Any) -> None:
    json.dumps(to_json_value(value), allow_nan=False)  # raises on NaN, Infinity or objects
