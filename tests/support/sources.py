"""Source definitions pointing at the local stand-ins."""

from __future__ import annotations

from typing import Any

from agentflow_grpc.model.sources import SourceDefinition


def llm_source(name: str, source_type: str, url: str) -> SourceDefinition:
    """A chat (and image) source served by the fake provider at `url`, in the wire format of
    its type: OpenAI's under `/v1` for `openai`; the API root for `anthropic` and `gemini`,
    whose SDKs add their own paths (`/v1/messages`, `/v1beta/models/…`)."""
    base_url = f"{url}/v1" if source_type == "openai" else url
    images = {} if source_type == "anthropic" else {"image_model": "fake-image"}  # none there
    return SourceDefinition(
        name=name,
        type=source_type,
        config={"base_url": base_url, "model": "fake-model", **images},
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
