"""TokenUsage: spent tokens and tokens the response cache saved, summed and serialized."""

from __future__ import annotations

from agentflow_grpc.model.events import TokenUsage, node_completed


def test_cached_tokens_add_up_apart_from_the_spent_ones() -> None:
    total = TokenUsage(3, 4, 7) + TokenUsage(cached_tokens=7) + TokenUsage(1, 1, 2, 5)

    assert total == TokenUsage(4, 5, 9, 12)


def test_cached_tokens_appear_in_the_dict_only_when_there_are_some() -> None:
    assert TokenUsage(3, 4, 7).to_dict() == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }
    with_cached = TokenUsage(0, 0, 0, 7).to_dict()
    assert with_cached["cached_tokens"] == 7
    assert TokenUsage.from_dict(with_cached) == TokenUsage(cached_tokens=7)
    assert TokenUsage.from_dict({"total_tokens": 2}) == TokenUsage(total_tokens=2)


def test_node_completed_says_how_the_cache_served_only_when_it_was_asked() -> None:
    assert "cache" not in node_completed("a", 1, {}, 1.0, None).data
    assert node_completed("a", 1, {}, 1.0, None, "hit").data["cache"] == "hit"
