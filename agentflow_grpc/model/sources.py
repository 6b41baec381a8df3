"""A source as a user defines it: a name, a type, a public `config` and write-only `secrets`.

Stored by `storage.sources`, checked and opened by an adapter of `sources/`, named by nodes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, StringConstraints

SourceName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class SourceDefinition(BaseModel):
    """A source as configured. Secrets never appear in `repr`, logs or dumps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    name: SourceName
    type: str = Field(min_length=1, description="The adapter, e.g. `openai`, `postgres`, `http`.")
    config: dict[str, JsonValue] = Field(default_factory=dict)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
