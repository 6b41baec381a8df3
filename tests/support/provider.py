"""Helpers on the fake provider (agentflow_grpc.testing): what it was asked, and the prompts a
test's rule singles out."""

from __future__ import annotations

from agentflow_grpc.testing import CHAT_PATH, FakeProviderServer

# Prompts holding this are the ones a test's provider rule delays:
# `provider.add_rule(contains=SLOW, delay=30)`; `support.runs.slow_spec` is a spec with one.
SLOW = "[slow]"


def chat_requests(provider: FakeProviderServer) -> int:
    """How many chat replies the provider was asked for, in any wire format it speaks: OpenAI's
    chat completions, Anthropic's messages, Gemini's (streamed) generateContent (Azure's path
    not included)."""
    return sum(
        request.path in (CHAT_PATH, "/v1/messages")
        or request.path.endswith((":generateContent", ":streamGenerateContent"))
        for request in provider.requests
    )
