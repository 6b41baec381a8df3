"""Node models: one class per node type, joined in the `Node` union discriminated by `type`.

Each node lists the templates and expressions it holds (`template_fields`), so the validator checks
them without knowing node types, and the runtime renders exactly the same fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal, Self, get_args

from pydantic import Field, JsonValue, StringConstraints, model_validator

from agentflow_grpc.spec.base import (
    CachePolicy,
    Expression,
    Identifier,
    RetryPolicy,
    SourceRef,
    SpecModel,
    Template,
)

TemplateKind = Literal["template", "expression"]
"""A template renders text (`Hi {{ inputs.name }}`); an expression computes a value."""


@dataclass(frozen=True, slots=True)
class TemplateField:
    """A string in a node that is rendered at run time."""

    location: tuple[str | int, ...]  # relative to the node, e.g. ("config", "prompt")
    text: str
    kind: TemplateKind
    is_prompt: bool = False


class NodeBase(SpecModel):
    id: Identifier = Field(description="Unique within the workflow; templates use `nodes.<id>`.")
    description: str | None = Field(None, max_length=2000)
    timeout: float | None = Field(
        None, gt=0, le=3600, description="Seconds one attempt may take before it fails."
    )
    retry: RetryPolicy | None = None
    at_most_once: bool = Field(
        False,
        description=(
            "Never repeat this node when the outcome of its call is unknown: when the run is "
            "resumed after its replica died while the node was running, or when an attempt "
            "failed in a way that may have reached the provider (a timeout), the node fails "
            "with `node.outcome_unknown` instead of running again."
        ),
    )

    def template_fields(self) -> Iterator[TemplateField]:
        return iter(())


# --- input ---


class InputNode(NodeBase):
    """Where runs start: checks the run's inputs against the declared `inputs`, adds defaults."""

    type: Literal["input"]


# --- router ---


class Route(SpecModel):
    name: Identifier
    when: Expression
    description: str | None = None


class RouterConfig(SpecModel):
    routes: list[Route] = Field(min_length=1, description="Checked in order; the first true wins.")
    default: Identifier = Field("default", description="The route taken when no condition is true.")
    max_iterations: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Bounds how often this router may run in one execution; required on loops.",
    )


class RouterNode(NodeBase):
    """Chooses one named route; edges leaving a router carry the route name."""

    type: Literal["router"]
    config: RouterConfig

    def route_names(self) -> list[str]:
        return [route.name for route in self.config.routes] + [self.config.default]

    def template_fields(self) -> Iterator[TemplateField]:
        for index, route in enumerate(self.config.routes):
            yield TemplateField(("config", "routes", index, "when"), route.when, "expression")


# --- llm ---


class ChatMessage(SpecModel):
    role: Literal["system", "user", "assistant"]
    content: Template


class LlmConfig(SpecModel):
    model: str | None = Field(None, min_length=1, description="Defaults to the source's model.")
    system: Template | None = None
    prompt: Template | None = Field(None, description="The user message; or give `messages`.")
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    response_format: Literal["text", "json"] = "text"
    output_schema: dict[str, JsonValue] | None = Field(
        None, description="JSON Schema the reply must satisfy (structured output)."
    )
    stream: bool = Field(True, description="Stream tokens as execution events.")
    cache: CachePolicy | None = Field(
        None, description="Answer repeated requests from the cache; off unless given."
    )

    @model_validator(mode="after")
    def _one_prompt_form(self) -> Self:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of `prompt` or `messages`")
        if self.output_schema is not None and self.response_format != "json":
            raise ValueError('`output_schema` needs `response_format: "json"`')
        return self


class LlmNode(NodeBase):
    """Calls a chat model with rendered messages; streams tokens."""

    type: Literal["llm"]
    source: SourceRef
    config: LlmConfig

    def template_fields(self) -> Iterator[TemplateField]:
        config = self.config
        if config.system is not None:
            yield TemplateField(("config", "system"), config.system, "template", is_prompt=True)
        if config.prompt is not None:
            yield TemplateField(("config", "prompt"), config.prompt, "template", is_prompt=True)
        for index, message in enumerate(config.messages or ()):
            location = ("config", "messages", index, "content")
            yield TemplateField(location, message.content, "template", is_prompt=True)


# --- image ---


class ImageConfig(SpecModel):
    prompt: Template
    model: str | None = Field(None, min_length=1)
    size: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$")] = (
        "1024x1024"
    )
    n: int = Field(1, ge=1, le=10)
    quality: str | None = None
    output: Literal["url", "b64_json"] = "url"


class ImageNode(NodeBase):
    """Generates images from a rendered prompt."""

    type: Literal["image"]
    source: SourceRef
    config: ImageConfig

    def template_fields(self) -> Iterator[TemplateField]:
        yield TemplateField(("config", "prompt"), self.config.prompt, "template", is_prompt=True)


# --- database ---


class DatabaseConfig(SpecModel):
    query: str = Field(
        min_length=1,
        description="One SQL statement with bind placeholders: $1, $2 … (postgres) or ? "
        "(mysql); never a template.",
    )
    params: list[Template] = Field(
        default_factory=list, description="Bind parameter values, in placeholder order."
    )
    read_only: bool = Field(True, description="Run in a read-only transaction.")
    max_rows: int = Field(1000, ge=1, le=100_000)
    statement_timeout: float = Field(30.0, gt=0, le=600, description="Seconds.")


class DatabaseNode(NodeBase):
    """Runs one parameterized SQL statement against a database source."""

    type: Literal["database"]
    source: SourceRef
    config: DatabaseConfig

    def template_fields(self) -> Iterator[TemplateField]:
        for index, param in enumerate(self.config.params):
            yield TemplateField(("config", "params", index), param, "template")


# --- aggregator ---


class AggregatorConfig(SpecModel):
    strategy: Literal["object", "list", "text", "summarize"] = "object"
    separator: str = Field("\n\n", description="Joins texts for `text` and `summarize`.")
    prompt: Template | None = Field(
        None, description="Instruction for `summarize`; the joined texts follow it."
    )
    model: str | None = Field(None, min_length=1)
    cache: CachePolicy | None = Field(
        None, description="`summarize` only: answer repeated requests from the cache."
    )

    @model_validator(mode="after")
    def _cache_with_summarize(self) -> Self:
        if self.cache is not None and self.strategy != "summarize":
            raise ValueError("`cache` applies to the `summarize` strategy only (it calls an LLM)")
        return self


class AggregatorNode(NodeBase):
    """Waits for all its incoming branches and merges their outputs."""

    type: Literal["aggregator"]
    source: SourceRef | None = Field(None, description="The LLM source used by `summarize`.")
    config: AggregatorConfig = Field(default_factory=AggregatorConfig)

    def template_fields(self) -> Iterator[TemplateField]:
        if self.config.prompt is not None:
            yield TemplateField(
                ("config", "prompt"), self.config.prompt, "template", is_prompt=True
            )


# --- http ---

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class HttpConfig(SpecModel):
    method: HttpMethod = "GET"
    url: Template = Field(
        min_length=1, description="Absolute, or relative to the source's base URL."
    )
    headers: dict[str, Template] = Field(default_factory=dict)
    query: dict[str, Template] = Field(default_factory=dict)
    body: JsonValue = Field(None, description="JSON body; every string in it is a template.")
    extract: dict[Identifier, str] | None = Field(
        None, description="Output fields taken from the JSON response by JSONPath (RFC 9535)."
    )
    max_response_bytes: int = Field(1_048_576, ge=1, le=50 * 1_048_576)
    idempotency_key: bool = Field(
        True,
        description=(
            "Send an `Idempotency-Key` header on POST and PATCH, the same on every retry and "
            "resume of one visit of the node, so that the API can apply the request once. "
            "A header of that name in `headers` wins. False: send none."
        ),
    )

    @model_validator(mode="after")
    def _no_body_without_payload_method(self) -> Self:
        if self.body is not None and self.method in ("GET", "HEAD"):
            raise ValueError(f"a {self.method} request has no body; use `query` or another method")
        return self


class HttpNode(NodeBase):
    """Calls an HTTP API and returns its (extracted) JSON response."""

    type: Literal["http"]
    source: SourceRef | None = None
    config: HttpConfig

    def template_fields(self) -> Iterator[TemplateField]:
        config = self.config
        yield TemplateField(("config", "url"), config.url, "template")
        for name, value in config.headers.items():
            yield TemplateField(("config", "headers", name), value, "template")
        for name, value in config.query.items():
            yield TemplateField(("config", "query", name), value, "template")
        yield from _json_templates(config.body, ("config", "body"))


def _json_templates(value: JsonValue, location: tuple[str | int, ...]) -> Iterator[TemplateField]:
    if isinstance(value, str):
        yield TemplateField(location, value, "template")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_templates(item, (*location, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_templates(item, (*location, key))


# --- plugin ---

PluginName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")]


class PluginNode(NodeBase):
    """A custom node type registered by a plugin; its config must fit the plugin's schema."""

    type: Literal["plugin"]
    plugin: PluginName = Field(description="The registered plugin type, e.g. `acme.sentiment`.")
    source: SourceRef | None = None
    config: dict[str, JsonValue] = Field(default_factory=dict)

    def plugin_template_fields(self, template_keys: frozenset[str]) -> Iterator[TemplateField]:
        """The config fields the plugin declares as templates (string values of those keys)."""
        for key in sorted(template_keys & self.config.keys()):
            yield from _json_templates(self.config[key], ("config", key))


AnyNode = (
    InputNode
    | RouterNode
    | LlmNode
    | ImageNode
    | DatabaseNode
    | AggregatorNode
    | HttpNode
    | PluginNode
)
Node = Annotated[AnyNode, Field(discriminator="type")]
"""A node of any type; pydantic picks the class by `type`."""

NODE_TYPES: tuple[str, ...] = tuple(
    get_args(node_class.model_fields["type"].annotation)[0] for node_class in get_args(AnyNode)
)
