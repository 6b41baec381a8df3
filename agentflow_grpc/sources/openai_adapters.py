"""The OpenAI-compatible source types (`openai`, `azure_openai`): their config, and the adapters
that check a definition and open an `OpenAICompatibleSource` on the SDK's client
(`openai_compatible.py`); `azure_openai`'s adapter, with its deployments and Entra ID, is in
`azure_openai.py`. Anthropic and Gemini have their own SDKs and adapters
(`anthropic_messages.py`, `gemini.py`); their OpenAI-compatible endpoints stay reachable as
`openai` sources with that `base_url`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.sources.azure_openai import AzureOpenAIAdapter
from agentflow_grpc.sources.base import (
    ChatMetrics,
    ProviderLimiter,
    parse_config,
)
from agentflow_grpc.sources.genai_telemetry import (
    SourceChatMetrics,
)
from agentflow_grpc.sources.openai_compatible import OpenAICompatibleSource, OpenAIConfig
from agentflow_grpc.sources.rate_limits import CallGate


@dataclass(frozen=True, slots=True)
class OpenAICompatibleAdapter:
    type_name: str
    provider_name: str  # OpenTelemetry's gen_ai.provider.name
    metrics: ChatMetrics  # every chat call is recorded here
    default_base_url: str | None = None
    images: bool = True
    limiter: ProviderLimiter | None = None  # counts calls against `config.limits`

    def open(self, definition: SourceDefinition) -> OpenAICompatibleSource:
        config = parse_config(OpenAIConfig, definition)
        api_key = definition.secrets.get("api_key")
        if api_key is None:
            raise SourceConfigError(f"source {definition.name!r} needs the secret `api_key`")
        common: dict[str, Any] = {
            "api_key": api_key.get_secret_value(),
            "timeout": config.timeout,
            "max_retries": 0,
            "default_headers": config.default_headers or None,
            "organization": config.organization,
            # aiohttp parses HTTP in C; the SDK's default transport (httpx2 over h11) does it in
            # Python: ~12 % of a streamed run's server CPU (bench/peer.py, #16). One client per
            # opened source, shared by every run of the tenant (services/shared_sources.py).
            "http_client": openai.DefaultAioHttpClient(),
        }
        client = openai.AsyncOpenAI(base_url=config.base_url or self.default_base_url, **common)
        gate = CallGate(definition, config.limits, self.limiter)
        return OpenAICompatibleSource(
            definition,
            config,
            client,
            images=self.images,
            gate=gate,
            metrics=SourceChatMetrics(self.metrics, self.provider_name, config.model),
        )


def adapters(
    metrics: ChatMetrics, limiter: ProviderLimiter | None = None, *, server_identity: bool = False
) -> list[OpenAICompatibleAdapter | AzureOpenAIAdapter]:
    """The adapters, recording chat calls in `metrics` and counting calls against sources'
    limits with `limiter`; `server_identity`: Azure sources may sign in as the server's own
    identity (AzureOpenAIAdapter)."""
    return [
        OpenAICompatibleAdapter("openai", "openai", metrics, limiter=limiter),
        AzureOpenAIAdapter(metrics, limiter=limiter, server_identity=server_identity),
    ]
