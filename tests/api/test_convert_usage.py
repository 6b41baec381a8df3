"""TokenUsage reaches the API with the tokens the response cache saved."""

from __future__ import annotations

from agentflow_grpc.api.convert import usage_to_proto
from agentflow_grpc.model.events import TokenUsage


def test_usage_to_proto_carries_cached_tokens() -> None:
    message = usage_to_proto(TokenUsage(3, 4, 7, 11))

    assert (message.prompt_tokens, message.completion_tokens, message.total_tokens) == (3, 4, 7)
    assert message.cached_tokens == 11
