"""Estimated cost (services/pricing.py): genai-prices' list prices for the models it knows,
under our gen_ai.provider.name values; an unknown model or provider is `known=False` at cost 0,
never an error."""

from __future__ import annotations

import pytest

from agentflow_grpc.services.pricing import PROVIDER_IDS, UNKNOWN, Price, estimate

# USD per million tokens (input, output), as genai-prices has them.
GPT_4O_MINI = (0.15, 0.60)
GEMINI_2_FLASH = (0.10, 0.40)


def test_a_known_model_is_priced_at_its_list_price() -> None:
    price = estimate("openai", "gpt-4o-mini", 1_000_000, 1_000_000)
    assert price == Price(pytest.approx(sum(GPT_4O_MINI)), True)
    small = estimate("openai", "gpt-4o-mini", 1_200, 300)
    expected = (1_200 * GPT_4O_MINI[0] + 300 * GPT_4O_MINI[1]) / 1_000_000
    assert small.known
    assert small.cost_usd == pytest.approx(expected, rel=1e-12)


def test_a_dated_model_name_as_providers_reply_with_it_is_priced_as_its_model() -> None:
    assert estimate("openai", "gpt-4o-mini-2024-07-18", 1_000, 0) == estimate(
        "openai", "gpt-4o-mini", 1_000, 0
    )


@pytest.mark.parametrize(
    ("provider", "model", "per_million"),
    [
        ("azure.ai.openai", "gpt-4o-mini", GPT_4O_MINI),
        ("gcp.gemini", "gemini-2.0-flash", GEMINI_2_FLASH),
        ("gcp.vertex_ai", "gemini-2.0-flash", GEMINI_2_FLASH),
    ],
)
def test_our_provider_names_map_onto_the_price_lists(
    provider: str, model: str, per_million: tuple[float, float]
) -> None:
    assert provider in PROVIDER_IDS
    price = estimate(provider, model, 2_000_000, 1_000_000)
    assert price.known
    assert price.cost_usd == pytest.approx(2 * per_million[0] + per_million[1])


def test_anthropic_models_are_priced() -> None:
    price = estimate("anthropic", "claude-3-5-haiku-latest", 1_000, 1_000)
    assert price.known
    assert price.cost_usd > 0


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "fake-model"),  # an unknown model of a known provider
        ("openai", "no-such-model-9000"),
        ("some.new.provider", "llama-mystery"),  # neither known
        ("", ""),  # tokens a plugin reported without naming a model
    ],
)
def test_an_unknown_model_has_no_price_and_no_error(provider: str, model: str) -> None:
    assert estimate(provider, model, 1_000, 1_000) == UNKNOWN == Price(0.0, False)


def test_a_provider_we_cannot_name_is_guessed_from_the_model() -> None:
    assert estimate("", "gpt-4o-mini", 1_000, 0) == estimate("openai", "gpt-4o-mini", 1_000, 0)


def test_no_tokens_cost_nothing_for_a_known_model() -> None:
    assert estimate("openai", "gpt-4o-mini", 0, 0) == Price(0.0, True)


def test_prompt_cache_reads_cost_less_and_writes_more_than_other_input_tokens() -> None:
    plain = estimate("anthropic", "claude-sonnet-4-5", 1_000_000, 0)
    read = estimate("anthropic", "claude-sonnet-4-5", 1_000_000, 0, cache_read_tokens=800_000)
    written = estimate("anthropic", "claude-sonnet-4-5", 1_000_000, 0, cache_write_tokens=800_000)
    assert all(price.known for price in (plain, read, written))
    assert read.cost_usd < plain.cost_usd < written.cost_usd
