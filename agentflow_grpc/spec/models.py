"""The WorkflowSpec document: metadata, declared inputs and outputs, nodes and edges."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Annotated, Any, Literal, Self

from pydantic import Field, JsonValue, StringConstraints, model_validator

from agentflow_grpc.spec.base import Expression, Identifier, SourceRef, SpecModel
from agentflow_grpc.spec.nodes import Node

API_VERSION = "agentflow/v1"
SUPPORTED_API_VERSIONS: tuple[str, ...] = (API_VERSION,)

JsonType = Literal["string", "number", "integer", "boolean", "object", "array"]


class InputParam(SpecModel):
    """A declared input: a subset of JSON Schema that maps one-to-one onto real JSON Schema."""

    type: JsonType
    description: str | None = Field(None, max_length=2000)
    required: bool | None = Field(
        None, description="Defaults to true, or to false when a `default` is given."
    )
    default: JsonValue = Field(None, description="Used when the run does not give this input.")
    enum: list[JsonValue] | None = Field(None, min_length=1)
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=0)
    pattern: str | None = None
    items: InputParam | None = Field(None, description="Element type of an `array`.")
    properties: dict[Identifier, InputParam] | None = Field(
        None, description="Fields of an `object`."
    )

    @model_validator(mode="after")
    def _keywords_fit_type(self) -> Self:
        misplaced = {
            "minimum": ("number", "integer"),
            "maximum": ("number", "integer"),
            "min_length": ("string",),
            "max_length": ("string",),
            "pattern": ("string",),
            "items": ("array",),
            "properties": ("object",),
        }
        for keyword, types in misplaced.items():
            if getattr(self, keyword) is not None and self.type not in types:
                allowed = " or ".join(types)
                raise ValueError(f"`{keyword}` applies to {allowed} inputs, not to {self.type}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"`pattern` is not a valid regular expression: {exc}") from None
        return self

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else not self.has_default

    def to_json_schema(self) -> dict[str, Any]:
        """The equivalent JSON Schema (draft 2020-12), used to check run inputs and defaults."""
        schema: dict[str, Any] = {"type": self.type}
        for keyword, json_keyword in (
            ("description", "description"),
            ("enum", "enum"),
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("min_length", "minLength"),
            ("max_length", "maxLength"),
            ("pattern", "pattern"),
        ):
            value = getattr(self, keyword)
            if value is not None:
                schema[json_keyword] = value
        if self.has_default:
            schema["default"] = self.default
        if self.items is not None:
            schema["items"] = self.items.to_json_schema()
        if self.properties is not None:
            schema["properties"] = {k: v.to_json_schema() for k, v in self.properties.items()}
            schema["required"] = [k for k, v in self.properties.items() if v.is_required]
        return schema


class OutputSpec(SpecModel):
    """One field of the workflow's result, computed from node outputs when the run ends."""

    from_: Expression = Field(
        alias="from",
        description="Expression giving the value, e.g. `nodes.draft.output.text`. A node that did "
        "not run (a route not taken) is undefined: `nodes.a.output.text if nodes.a is defined "
        "else nodes.b.output.text`.",
    )
    description: str | None = Field(None, max_length=2000)


class Edge(SpecModel):
    from_: Identifier = Field(alias="from", description="Id of the node the edge leaves.")
    to: Identifier = Field(description="Id of the node the edge enters.")
    route: Identifier | None = Field(
        None, description="For edges leaving a router: the route that takes this edge."
    )


class Webhook(SpecModel):
    """Where to POST the execution summary when a run ends (docs/webhooks.md)."""

    source: SourceRef = Field(
        description="A stored source of type `webhook`: URL and signing secret."
    )


WorkflowName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,62}$")]


class WorkflowSpec(SpecModel):
    """An LLM workflow: a graph of nodes, from one input node to the nodes its outputs read."""

    api_version: Literal["agentflow/v1"] = Field(
        description="Version of the spec format; `agentflow/v1` is the only one so far."
    )
    name: WorkflowName = Field(description="Lower-case slug, e.g. `support-triage`.")
    title: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    inputs: dict[Identifier, InputParam] = Field(default_factory=dict)
    outputs: dict[Identifier, OutputSpec] = Field(min_length=1)
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    webhook: Webhook | None = Field(
        None, description="Told when a run ends; a run request may name another."
    )

    def to_document(self) -> dict[str, Any]:
        """The spec as a JSON-ready document (the inverse of `WorkflowSpec.model_validate`)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON: equal specs hash equal, whatever their key order.

        Computed once per (immutable) spec object."""
        canonical = json.dumps(
            self.to_document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode()).hexdigest()
