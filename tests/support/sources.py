"""Source definitions pointing at the local stand-ins."""

from __future__ import annotations

from typing import Any

from agentflow_grpc.model.sources import SourceDefinition


def llm_source(name: str, source_type: str, url: str) -> SourceDefinition:
    """An OpenAI-compatible source (chat and images) served by the fake provider at `url`."""
    return SourceDefinition(
        name=name,
        type=source_type,
        config={"base_url": f"{url}/v1", "model": "fake-model", "image_model": "fake-image"},
        secrets={"api_key": "sk-test"},
    )


def crm_source(url: str, *, name: str = "crm", **config: Any) -> SourceDefinition:
    """An `http` source on the local CRM API at `url` (tests/support/crm_api.py), with a token;
    allowed into the private network (the API listens on 127.0.0.1) unless `config` says not."""
    return SourceDefinition(
        name=name,
        type="http",
        config={"base_url": url, "allow_private_network": True, **config},
        secrets={"token": "crm-secret"},
    )
