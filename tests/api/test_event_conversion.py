"""An execution event as the API sends it (api/convert.py): the fields, and its data as a
protobuf Struct holding plain JSON, whatever Python values a node left in it."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from google.protobuf import json_format

from agentflow_grpc.api.convert import dict_to_struct, event_to_proto
from agentflow_grpc.model.events import EventType, ExecutionEvent

EXECUTION = uuid.UUID(int=7)
AT = datetime(2026, 12, 5, 8, 0, 1, 250000, tzinfo=UTC)


def test_a_token_event_keeps_every_field() -> None:
    event = ExecutionEvent(str(EXECUTION), 5, AT, EventType.NODE_TOKEN, "write", 2, {"text": "Hel"})
    message = event_to_proto(event)
    assert message.execution == f"executions/{EXECUTION}"
    assert (message.sequence, message.type, message.node_id, message.attempt) == (
        5,
        "node_token",
        "write",
        2,
    )
    assert message.time.ToDatetime(tzinfo=UTC) == AT
    assert json_format.MessageToDict(message.data) == {"text": "Hel"}


def test_a_run_event_without_node_or_data() -> None:
    event = ExecutionEvent(str(EXECUTION), 1, AT, EventType.EXECUTION_STARTED, None, None, {})
    message = event_to_proto(event)
    assert (message.node_id, message.attempt) == ("", 0)
    assert not message.HasField("data") or len(message.data.fields) == 0


def test_data_becomes_plain_json() -> None:
    data = {
        "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
        "nan": math.nan,
        "infinite": [math.inf, -math.inf],
        "when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "amount": Decimal("12.50"),
        "id": uuid.UUID(int=1),
    }
    assert json_format.MessageToDict(dict_to_struct(data)) == {
        "nested": {"list": [1.0, 2.5, None, True, "x"], "empty": {}},
        "nan": None,
        "infinite": [None, None],
        "when": "2026-01-02 03:04:05+00:00",
        "amount": "12.50",
        "id": "00000000-0000-0000-0000-000000000001",
    }
    assert len(dict_to_struct(None).fields) == 0
