"""Estimated cost of model tokens, from the prices the `genai-prices` package ships with
(https://github.com/pydantic/genai-prices; the only module that imports it: an import-linter
contract). The prices are the package's own snapshot: nothing is fetched at run time, so a
newer price list comes with a newer package.

Our provider names are OpenTelemetry's `gen_ai.provider.name` values (the `model` of
node_completed, docs/runtime.md); `PROVIDER_IDS` maps them onto the package's provider ids. A
provider it has no id for is left for the package to guess from the model's name (an `openai`
source on another server is priced as OpenAI when its model is one of OpenAI's). A model with
no price is `price_known=False` at cost 0, never an error. Tokens the response cache saved
cost nothing, so only input and output tokens are priced, at today's prices; input tokens the
provider read from (or wrote to) its prompt cache at its cache prices.
"""

from __future__ import annotations

from dataclasses import dataclass

from genai_prices import Usage, calc_price

from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.pricing")

# gen_ai.provider.name (OpenTelemetry's GenAI conventions) → genai-prices' provider id.
PROVIDER_IDS = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "perplexity": "perplexity",
    "cohere": "cohere",
}


@dataclass(frozen=True, slots=True)
class Price:
    cost_usd: float  # 0 when not known
    known: bool


UNKNOWN = Price(0.0, False)


def estimate(
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Price:
    """What `input_tokens` and `output_tokens` of `model` cost at the provider's list price;
    `cache_read_tokens` and `cache_write_tokens` are the part of `input_tokens` the provider's
    prompt cache served or stored (genai-prices counts them within input tokens too)."""
    if not model:
        return UNKNOWN
    usage = Usage(
        input_tokens=max(0, input_tokens),
        output_tokens=max(0, output_tokens),
        cache_read_tokens=max(0, cache_read_tokens) or None,
        cache_write_tokens=max(0, cache_write_tokens) or None,
    )
    try:
        calculation = calc_price(usage, model, provider_id=PROVIDER_IDS.get(provider))
    except LookupError:  # no such provider or model in the price list
        return UNKNOWN
    except Exception as exc:  # a price the package cannot apply: not known, never a failure
        log.warning("pricing.unusable", provider=provider, model=model, error=str(exc))
        return UNKNOWN
    return Price(float(calculation.total_price), True)
