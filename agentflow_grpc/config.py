"""All settings, read once from the environment (AGENTFLOW_*) into one immutable object."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal, Self

import platformdirs
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.spec import Limits

ENV_PREFIX = "AGENTFLOW_"
# An origin as browsers send it: scheme://host[:port], nothing after.
_ORIGIN = re.compile(
    r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


def default_home() -> Path:
    """Where AgentFlow keeps its local state (the embedded database) unless told otherwise."""
    return Path(platformdirs.user_data_dir("agentflow", appauthor=False))


def default_processes() -> int:
    """One server process per core this process may run on (its CPU affinity, which container
    limits by cpuset narrow; not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1  # no affinity outside Linux


class Settings(BaseSettings):
    """Every field is documented in the README's configuration table (a test keeps them in step)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level of log events written."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`json` lines, human `console` lines, or `auto`: console on a TTY."
    )
    trace_content: bool = Field(
        False,
        description="Record prompts and completions in the LLM calls' spans (traces are set up "
        "by the standard OTEL_* variables; off: spans carry no message text).",
    )
    sentry_dsn: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SENTRY_DSN", "AGENTFLOW_SENTRY_DSN"),
        description="Sentry's DSN: internal errors are sent there (SENTRY_ENVIRONMENT and "
        "SENTRY_RELEASE are read by sentry-sdk itself); unset: no error tracking.",
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

    home: Path = Field(
        default_factory=default_home,
        description="Local state: the embedded PostgreSQL's data directory, the dev secret key.",
    )
    database_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "AGENTFLOW_DATABASE_URL"),
        description="PostgreSQL to use; unset: an embedded server under `home`.",
    )
    database_pool_min: int = Field(1, ge=0, le=1000, description="Connections kept open.")
    database_pool_max: int = Field(10, ge=1, le=1000, description="Most connections open at once.")
    database_acquire_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds a request waits for a free connection."
    )
    secret_keys: SecretStr | None = Field(
        None,
        description="Keys that encrypt source secrets: `ID:BASE64KEY,…`, the newest last.",
    )

    grpc_host: str = Field("127.0.0.1", description="Address the gRPC server listens on.")
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate chain of the gRPC server; with TLS_KEY_FILE it serves TLS "
        "only. Replaced files are picked up at the next connection (no restart).",
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of TLS_CERT_FILE.")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM certificate authorities of clients: set, the gRPC server requires a "
        "client certificate they signed (mutual TLS).",
    )
    allow_plaintext: bool = Field(
        False,
        description="Let the gRPC server listen without TLS on an address that is not loopback "
        "(a warning is logged); off: such a start is refused.",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the Prometheus metrics endpoint listens on."
    )
    metrics_port: int = Field(
        0,
        ge=-1,
        le=65535,
        description="Port of `/metrics` (Prometheus) of `agentflow serve` and `agentflow dev`; "
        "0 picks a free one (printed), -1 serves none.",
    )
    processes: int = Field(
        default_factory=default_processes,
        ge=1,
        le=1024,
        description="Server processes of `agentflow serve` and `agentflow dev`, sharing the gRPC "
        "port (SO_REUSEPORT); default: one per usable core; 1: the command's own process serves.",
    )
    max_message_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024, description="Largest gRPC message."
    )
    shutdown_grace: float = Field(
        10.0, ge=0, le=3600, description="Seconds running calls and runs get to finish on stop."
    )
    max_running_executions: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Runs one server drives at once; more are refused with RESOURCE_EXHAUSTED.",
    )

    redis_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "AGENTFLOW_REDIS_URL"),
        description="Redis (or Valkey) to use; unset: an embedded Valkey under `home`.",
    )
    redis_prefix: str = Field(
        "af",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every Redis key AgentFlow uses (deployments sharing a Redis).",
    )
    workers: int = Field(
        16, ge=0, le=10_000, description="Background executions one server runs at once (0: none)."
    )
    job_visibility_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a background run's replica may go quiet before another takes over.",
    )
    job_max_deliveries: int = Field(
        3, ge=1, le=100, description="Times a background run is taken up before it is failed."
    )
    webhook_retry_delay: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Seconds before a failed webhook delivery is retried "
        "the first time; each later delay doubles (with jitter) up to WEBHOOK_MAX_DELAY.",
    )
    webhook_max_delay: float = Field(
        7200.0, gt=0, le=86_400, description="Most seconds between two webhook attempts."
    )
    webhook_retry_window: float = Field(
        86_400.0,
        gt=0,
        le=30 * 86_400,
        description="Seconds after a run ended during which its webhook is retried; then failed.",
    )
    webhook_poll_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between looks for due webhook deliveries."
    )
    webhook_concurrency: int = Field(
        8, ge=0, le=1000, description="Webhook deliveries one server sends at once (0: none)."
    )
    azure_server_identity: bool = Field(
        False,
        description="Whether azure_openai sources with Entra ID and no client secret may sign "
        "in as the identity this server runs as (managed or workload identity, AZURE_* "
        "variables). Off: on a server shared by tenants it would lend each the server's access.",
    )

    rest_host: str = Field("127.0.0.1", description="Address the REST gateway (Envoy) listens on.")
    rest_port: int = Field(8080, ge=0, le=65535, description="REST port; 0 picks a free one.")
    gateway_admin_port: int = Field(
        0, ge=0, le=65535, description="Envoy's admin port, on 127.0.0.1; 0 picks a free one."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Browser origins (`https://app.example.com`, comma-separated) allowed to "
        "call the REST API from another origin; the gateway's own page needs none.",
    )
    gateway_stream_idle_timeout: float = Field(
        900.0,
        gt=0,
        le=86_400,
        description="Seconds an SSE stream may stay quiet before Envoy ends it.",
    )
    gateway_unary_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds a REST call other than a stream may take."
    )

    # Limits, in Redis, shared by every replica (agentflow_grpc/limits); 0: unlimited.
    tenant_requests_per_second: float = Field(
        200.0, ge=0, le=1_000_000, description="API calls a tenant may make a second, sustained."
    )
    tenant_request_burst: int = Field(
        400, ge=1, le=10_000_000, description="API calls a tenant may make at once."
    )
    key_requests_per_second: float = Field(
        100.0, ge=0, le=1_000_000, description="API calls one API key may make a second."
    )
    key_request_burst: int = Field(
        200, ge=1, le=10_000_000, description="API calls one API key may make at once."
    )
    tenant_max_concurrent_executions: int = Field(
        100, ge=0, le=1_000_000, description="Executions a tenant may run at once."
    )
    key_max_concurrent_executions: int = Field(
        0, ge=0, le=1_000_000, description="Executions one API key may run at once."
    )
    tenant_tokens_per_day: int = Field(
        0, ge=0, le=10**15, description="LLM tokens a tenant may use per UTC day."
    )

    # Identity (docs/security.md): API keys, and people signed in through OpenID Connect.
    api_key_cache_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Seconds a server keeps an API key it has looked up (0: look up every call). "
        "A revoked key is dropped from every server's cache at once through Redis; while Redis "
        "cannot tell it so, a server looks every key up.",
    )
    oidc_issuer: str | None = Field(
        None,
        description="OpenID Connect issuer whose access tokens (`authorization: Bearer <JWT>`) "
        "sign people in; unset: API keys only.",
    )
    oidc_audience: str | None = Field(
        None, description="The `aud` the issuer's tokens must carry for this API."
    )
    oidc_client_id: str | None = Field(
        None, description="The page's public client id at the issuer (sign-in with PKCE)."
    )
    oidc_scopes: str = Field(
        "openid profile", description="Scopes the page asks for when it signs someone in."
    )
    oidc_role_claim: str = Field(
        "groups", description="The token claim (a string or a list) mapped to a role."
    )
    oidc_roles: dict[str, Literal["viewer", "runner", "editor", "admin"]] = Field(
        default_factory=dict,
        description="JSON object: a value of the role claim → viewer, runner, editor or admin "
        '(e.g. `{"agentflow-admins": "admin"}`); the strongest match wins, none: refused.',
    )
    oidc_tenant_claim: str | None = Field(
        None, description="The token claim naming the caller's tenant; unset: OIDC_TENANT."
    )
    oidc_tenant: str | None = Field(
        None, description="The tenant every signed-in person belongs to, when no claim says."
    )
    oidc_clock_skew: float = Field(
        30.0, ge=0, le=600, description="Seconds of clock skew allowed on `exp`, `nbf`, `iat`."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, (list, tuple)):
            for origin in value:
                if not isinstance(origin, str) or not _ORIGIN.match(origin):
                    raise ValueError(
                        f"{origin!r} is not an origin such as https://app.example.com:8443"
                    )
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                f"{ENV_PREFIX}TLS_CERT_FILE and {ENV_PREFIX}TLS_KEY_FILE go together: set both "
                "or neither"
            )
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                f"{ENV_PREFIX}TLS_CLIENT_CA_FILE needs {ENV_PREFIX}TLS_CERT_FILE and "
                f"{ENV_PREFIX}TLS_KEY_FILE: mutual TLS is TLS first"
            )
        return self

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.database_pool_min > self.database_pool_max:
            raise ValueError(
                f"{ENV_PREFIX}DATABASE_POOL_MIN ({self.database_pool_min}) is larger than "
                f"{ENV_PREFIX}DATABASE_POOL_MAX ({self.database_pool_max})"
            )
        return self

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
            f"{variable_name(str(error['loc'][0]))}: {error['msg']}"
            if error["loc"]
            else error["msg"].removeprefix("Value error, ")
            for error in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


def variable_name(field: str) -> str:
    """The environment variable a setting is read from (`database_url` → `DATABASE_URL`)."""
    if field not in Settings.model_fields:  # already an alias, or a check across fields
        return field.upper()
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"{ENV_PREFIX}{field.upper()}"
