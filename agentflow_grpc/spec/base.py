"""Shared building blocks of the spec models: the base class, identifiers, retry and cache
policies."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"

Identifier = Annotated[
    str,
    StringConstraints(pattern=IDENTIFIER_PATTERN),
    Field(description="Letters, digits and '_', not starting with a digit (usable in templates)."),
]
"""Node ids, input and output names, route names: they appear in templates as `nodes.<id>`."""

SourceRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    Field(description="The id or name of a stored source (provider configuration)."),
]

Template = Annotated[
    str,
    Field(description="A Jinja2 template (sandboxed) over `inputs.*` and `nodes.<id>.output.*`."),
]

Expression = Annotated[
    str,
    StringConstraints(min_length=1),
    Field(
        description="A Jinja2 expression (sandboxed, no statements) over `inputs.*` and "
        "`nodes.<id>.output.*`, e.g. `nodes.classify.output.category == 'billing'`."
    ),
]


class SpecModel(BaseModel):
    """Every spec model: unknown fields are errors, types are not coerced, instances are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Backoff(SpecModel):
    """Exponential backoff between retry attempts, in seconds."""

    initial: float = Field(1.0, gt=0, le=300, description="Delay before the second attempt.")
    multiplier: float = Field(2.0, ge=1, le=10, description="Factor applied after each attempt.")
    max: float = Field(30.0, gt=0, le=3600, description="Upper bound of any single delay.")
    jitter: bool = Field(True, description="Randomise delays to avoid thundering herds.")

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> Self:
        if self.max < self.initial:
            raise ValueError(
                f"backoff.max ({self.max}) must not be below backoff.initial ({self.initial})"
            )
        return self


class RetryPolicy(SpecModel):
    """Retries of retryable failures (timeouts, rate limits, 5xx); never of client errors."""

    max_attempts: int = Field(3, ge=1, le=10, description="Attempts in all, the first included.")
    backoff: Backoff = Field(default_factory=Backoff)


MAX_CACHE_TTL = 30 * 24 * 3600
"""The longest a cached LLM reply may be kept: 30 days, in seconds."""


class CachePolicy(SpecModel):
    """Opt-in LLM response cache: the same request (provider, model, parameters, rendered
    messages) within `ttl` seconds is answered from the cache, without calling the provider."""

    ttl: float = Field(
        gt=0, le=MAX_CACHE_TTL, description="Seconds a reply stays cached (at most 30 days)."
    )
