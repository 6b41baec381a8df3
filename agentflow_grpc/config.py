"""All settings, read once from the environment (AGENTFLOW_*) into one immutable object."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentflow_grpc.errors import ConfigurationError
from agentflow_grpc.spec import Limits

ENV_PREFIX = "AGENTFLOW_"


class Settings(BaseSettings):
    """Every field is documented in the README's configuration table (a test keeps them in step)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level of log events written."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`json` lines, human `console` lines, or `auto`: console on a TTY."
    )
    max_nodes: int = Field(2000, ge=1, le=100_000, description="Most nodes a spec may have.")
    max_edges: int = Field(5000, ge=1, le=500_000, description="Most edges a spec may have.")
    max_prompt_chars: int = Field(
        100_000, ge=1, le=10_000_000, description="Longest prompt template, in characters."
    )
    node_timeout: float = Field(
        300.0, gt=0, le=86_400, description="Seconds one node attempt may take, unless it says."
    )
    execution_timeout: float = Field(
        3600.0, gt=0, le=604_800, description="Seconds a whole execution may take."
    )
    compiled_cache_size: int = Field(
        256, ge=1, le=100_000, description="Compiled workflow graphs kept in memory (by spec hash)."
    )

    def spec_limits(self) -> Limits:
        return Limits(
            max_nodes=self.max_nodes,
            max_edges=self.max_edges,
            max_prompt_chars=self.max_prompt_chars,
        )


def load_settings() -> Settings:
    """Read the environment; a bad value is a ConfigurationError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
