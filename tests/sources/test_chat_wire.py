"""Reading chat completions and streamed chunks from their JSON, as compatible servers send
them: every field may be missing, null or of another type."""

from __future__ import annotations

import pytest

from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.sources.chat_wire import Chunk, read_chunk, read_completion, read_usage


def test_a_content_chunk() -> None:
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
    }
    assert read_chunk(data) == Chunk("gpt-x", "Hel", None, None, has_choice=True)


def test_the_last_chunk_and_the_usage_chunk_without_choices() -> None:
    last = {"model": "gpt-x", "choices": [{"delta": {}, "finish_reason": "stop"}]}
    assert read_chunk(last) == Chunk("gpt-x", None, "stop", None, has_choice=True)
    usage = {
        "model": "gpt-x",
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    assert read_chunk(usage) == Chunk("gpt-x", None, None, TokenUsage(7, 2, 9), has_choice=False)


@pytest.mark.parametrize(
    "data",
    [
        None,
        "data: nonsense",
        [],
        {},
        {"choices": None, "delta": None},
        {"choices": [None]},
        {"choices": ["text"]},
        {"choices": [{"delta": None}]},
        {"choices": [{"delta": {"content": 5}, "finish_reason": 3}], "model": 1},
    ],
)
def test_missing_null_or_mistyped_fields_count_as_absent(data: object) -> None:
    chunk = read_chunk(data)
    assert (chunk.model, chunk.content, chunk.finish_reason, chunk.usage) == (None,) * 4


def test_a_completion_reads_the_first_choices_message() -> None:
    data = {
        "model": "gpt-x-2026",
        "choices": [
            {"message": {"role": "assistant", "content": "Hi"}, "finish_reason": "length"},
            {"message": {"role": "assistant", "content": "second"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    assert read_completion(data) == Chunk(
        "gpt-x-2026", "Hi", "length", TokenUsage(3, 1, 4), has_choice=True
    )
    assert not read_completion({"choices": []}).has_choice


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"prompt_tokens": 5, "completion_tokens": 2}, TokenUsage(5, 2, 7)),  # no total: the sum
        (
            {"prompt_tokens": -1, "completion_tokens": "2", "total_tokens": True},
            TokenUsage(0, 0, 0),
        ),
        ({}, TokenUsage(0, 0, 0)),
        (None, None),
        ([1, 2], None),
    ],
)
def test_usage(data: object, expected: TokenUsage | None) -> None:
    assert read_usage(data) == expected
