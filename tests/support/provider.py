"""Helpers on the fake provider (agentflow_grpc.testing): what it was asked, and the prompts a
test's rule singles out."""

from __future__ import annotations

from agentflow_grpc.testing import CHAT_PATH, FakeProviderServer

# Prompts holding this are the ones a test's provider rule delays:
# `provider.add_rule(contains=SLOW, delay=30)`; `support.runs.slow_spec` is a spec with one.
SLOW = "[slow]"


def chat_requests(provider: FakeProviderServer) -> int:
    """How many chat completions the provider was asked for (Azure's path not included)."""
    return sum(request.path == CHAT_PATH for request in provider.requests)
