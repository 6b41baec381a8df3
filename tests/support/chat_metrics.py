"""A ChatMetrics port that keeps what an LLM source records, for the adapters' own tests."""

from __future__ import annotations

from agentflow_grpc.sources.base import ChatCallMetrics


class RecordingMetrics:
    """Every label pair asked for, tokens used, failures' error types, successes, first chunks
    (one list for all models)."""

    def __init__(self) -> None:
        self.labels: list[tuple[str, str]] = []
        self.tokens: list[tuple[int, int]] = []
        self.failures: list[str] = []
        self.successes = 0
        self.first_chunks = 0

    def chat_calls(self, provider: str, model: str) -> ChatCallMetrics:
        self.labels.append((provider, model))
        return self

    def first_chunk(self, seconds: float) -> None:
        self.first_chunks += 1

    def succeeded(self, seconds: float) -> None:
        self.successes += 1

    def used_tokens(self, input_tokens: int, output_tokens: int) -> None:
        self.tokens.append((input_tokens, output_tokens))

    def failed(self, seconds: float, error_type: str) -> None:
        self.failures.append(error_type)
