"""Sources: configured connections to providers (LLM and image APIs, databases, HTTP APIs).

A `SourceDefinition` is what a user stores or writes in a sources file: a name, a type, a
public `config` and write-only `secrets`. An adapter registered for the type turns it into a
live `Source`; nodes use sources through the capability protocols below (`ChatModel`,
`ImageModel`, `Database`, `HttpApi`), never through a concrete adapter class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentflow_grpc.model.errors import SourceConfigError
from agentflow_grpc.model.events import TokenUsage
from agentflow_grpc.model.failures import NodeFailure, content_blocked
from agentflow_grpc.model.sources import SourceDefinition


class Source(Protocol):
    definition: SourceDefinition

    async def aclose(self) -> None:
        """Release clients and pools."""


@runtime_checkable
class SourceAdapter(Protocol):
    """Turns definitions of one source type into live sources (registered in `registry`)."""

    @property
    def type_name(self) -> str: ...

    def open(self, definition: SourceDefinition) -> Source:
        """Check the definition and build the source; connect lazily, on first use."""


ConfigModel = TypeVar("ConfigModel", bound=BaseModel)


def parse_config(model: type[ConfigModel], definition: SourceDefinition) -> ConfigModel:
    """An adapter's config model from a definition; a SourceConfigError naming each problem."""
    try:
        return model.model_validate(definition.config)
    except ValidationError as exc:
        problems = "; ".join(
            f"config.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise SourceConfigError(f"source {definition.name!r}: {problems}") from None


# --- limits on provider calls ---


class ProviderLimits(BaseModel):
    """A provider source's own limits (`config.limits`), shared by every run that uses the
    source, on every server: calls and tokens a minute (0: no limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int = Field(0, ge=0, le=100_000_000)
    tokens_per_minute: int = Field(0, ge=0, le=10_000_000_000)
    max_wait: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds a call may wait for the limit; longer: it fails with "
        "`provider.rate_limited` (retryable). 0: never wait.",
    )

    @property
    def active(self) -> bool:
        return self.requests_per_minute > 0 or self.tokens_per_minute > 0


class ProviderLimiter(Protocol):
    """Counts provider calls against sources' limits, across runs, tenants and servers (the
    server injects one backed by Redis, `agentflow_grpc.limits`; sources never see Redis).

    `source_key` names the source: its id (its name when it has none)."""

    async def acquire(self, source_key: str, limits: ProviderLimits) -> float:
        """Count one call if the source's minute allows it: 0.0. Otherwise count nothing and
        return the seconds until it would."""

    async def record_tokens(self, source_key: str, limits: ProviderLimits, tokens: int) -> None:
        """Count the tokens a call used, as the provider reported them."""


# --- metrics of provider calls ---


class ChatCallMetrics(Protocol):
    """What the chat calls of one provider and model record (the OpenTelemetry GenAI client
    metrics: duration, time to the first chunk, tokens). Seconds are measured from when the
    request is sent, after the source's own limits let it go."""

    def first_chunk(self, seconds: float) -> None:
        """A streamed call received its first chunk."""

    def succeeded(self, seconds: float) -> None:
        """A call returned its whole reply."""

    def used_tokens(self, input_tokens: int, output_tokens: int) -> None:
        """The provider reported a call's usage."""

    def failed(self, seconds: float, error_type: str) -> None:
        """A call ended in an error: `error_type` is low-cardinality (`timeout`, the HTTP
        status, the exception's class, `cancelled`)."""


class ChatMetrics(Protocol):
    """Where sources record their chat calls (the server injects its Prometheus metrics,
    `agentflow_grpc.observability.metrics`; sources never see prometheus_client).

    `provider` is the OpenTelemetry `gen_ai.provider.name` (`openai`, `azure.ai.openai`, …);
    `model` a model the source configures, or `_OTHER`, so that the labels stay bounded."""

    def chat_calls(self, provider: str, model: str) -> ChatCallMetrics: ...


class _Unrecorded:
    """Records nothing: for a `SourceSet` built without a registry (tests, local tools)."""

    def chat_calls(self, provider: str, model: str) -> ChatCallMetrics:
        return self

    def first_chunk(self, seconds: float) -> None:
        pass

    def succeeded(self, seconds: float) -> None:
        pass

    def used_tokens(self, input_tokens: int, output_tokens: int) -> None:
        pass

    def failed(self, seconds: float, error_type: str) -> None:
        pass


UNRECORDED: ChatMetrics = _Unrecorded()


# --- capabilities ---


@runtime_checkable
class Checkable(Protocol):
    async def check(self) -> str:
        """Connect and make one cheap call; what was done. Raises NodeFailure when it fails."""


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: Sequence[dict[str, str]]
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    response_format: Literal["text", "json"] = "text"
    output_schema: dict[str, Any] | None = None
    stream: bool = True


FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "other"]
"""Why a model stopped, in one vocabulary for every provider (OpenAI's words): `stop` (it
finished, or met a stop sequence), `length` (the token limit), `content_filter` (a safety or
content filter, a refusal), `tool_calls`, `other` (any reason a provider gives that is none of
these). Each adapter maps its provider's reasons (`FINISH_REASONS` of its module)."""


def finish_reason(native: str | None, mapping: dict[str, FinishReason]) -> FinishReason | None:
    """A provider's own finish reason in the shared vocabulary; None when it gave none."""
    if native is None or native == "":
        return None
    return mapping.get(native, "other")


def chosen_model(
    definition: SourceDefinition, requested: str | None, default: str | None, what: str
) -> str:
    """The model a call uses: the node's, else the source's default; `source.no_model` when
    neither names one (`what`: `chat`, `image`)."""
    model = requested or default
    if model is None:
        raise NodeFailure(
            "source.no_model",
            f"neither the node nor source {definition.name!r} names a {what} model",
        )
    return model


def blocked_unless_text(result: ChatResult) -> ChatResult:
    """`result`, unless a content filter stopped it before any text: then the failure
    `provider.content_blocked` (there is nothing to pass on; retrying gives the same)."""
    if result.finish_reason == "content_filter" and not result.text:
        raise content_blocked(f"{result.model} answered nothing (finish reason content_filter)")
    return result


@dataclass(frozen=True, slots=True)
class ChatResult:
    text: str
    model: str
    finish_reason: FinishReason | None
    usage: TokenUsage | None
    provider: str = ""  # the OpenTelemetry gen_ai.provider.name of the source that answered


@runtime_checkable
class ChatModel(Protocol):
    async def chat(self, request: ChatRequest, on_token: Callable[[str], None]) -> ChatResult:
        """Run one chat completion; `on_token` receives streamed text as it arrives."""


@dataclass(frozen=True, slots=True)
class ImageRequest:
    prompt: str
    model: str | None
    size: str
    n: int
    quality: str | None
    output: Literal["url", "b64_json"]


@dataclass(frozen=True, slots=True)
class ImageResult:
    images: list[dict[str, str]]  # each {"url": …} or {"b64_json": …}, plus "revised_prompt"
    model: str


@runtime_checkable
class ImageModel(Protocol):
    async def generate_images(self, request: ImageRequest) -> ImageResult: ...


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool


@runtime_checkable
class Database(Protocol):
    async def fetch(
        self,
        query: str,
        params: Sequence[Any],
        *,
        read_only: bool,
        max_rows: int,
        statement_timeout: float,
    ) -> QueryResult: ...


@runtime_checkable
class HttpApi(Protocol):
    """An HTTP API: base URL, auth and default headers, and a guarded client."""

    @property
    def base_url(self) -> str: ...

    def client(self) -> Any:
        """The `httpx2.AsyncClient` for this API (shared, guarded against private addresses)."""
