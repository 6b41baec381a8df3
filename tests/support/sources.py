"""Source definitions pointing at the local stand-ins."""

from __future__ import annotations

from agentflow_grpc.model.sources import SourceDefinition


def llm_source(name: str, source_type: str, url: str) -> SourceDefinition:
    """An OpenAI-compatible source (chat and images) served by the fake provider at `url`."""
    return SourceDefinition(
        name=name,
        type=source_type,
        config={"base_url": f"{url}/v1", "model": "fake-model", "image_model": "fake-image"},
        secrets={"api_key": "sk-test"},
    )
