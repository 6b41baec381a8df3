"""Database values as JSON, the same for every database source (postgres, mysql).

Numbers stay numbers (a decimal without a fraction becomes an integer), dates and times become
ISO 8601 strings, JSON documents their decoded values, bytes their hex, NULL `None`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Mapping
from typing import Any


def to_json_value(value: Any) -> Any:
    """A database value as JSON: numbers stay numbers, times become ISO 8601 strings.

    NaN and ±Infinity, which JSON has no numbers for, become the strings PostgreSQL prints.
    A mapping (a dict, or a driver's record type with `items()`) becomes an object.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float | decimal.Decimal):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, float):
            return value
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    if isinstance(value, Mapping) or callable(getattr(value, "items", None)):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)
