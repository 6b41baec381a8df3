"""Render a node's templates and evaluate expressions at run time, in Jinja2's sandbox.

The same environment parses templates at validation time (`spec.templates`), so what validated
renders. Compiled templates are cached per compiled workflow. A template that is one `{{ expr }}`
and nothing else keeps the expression's type (`{{ inputs.limit }}` gives 10, not "10"), which
matters for SQL parameters and JSON bodies.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.spec.templates import sandbox_environment

_SINGLE_EXPRESSION = re.compile(
    r"\A\s*\{\{(?P<expression>(?:(?!\{\{|\}\}|\{%|%\}|\{#).)*)\}\}\s*\Z", re.S
)


class NodeOutputs(Mapping[str, Mapping[str, Any]]):
    """`nodes` as templates see it: `nodes.<id>.output`, for the nodes that have run."""

    __slots__ = ("_outputs",)

    def __init__(self, outputs: Mapping[str, Any]) -> None:
        self._outputs = outputs

    def __getitem__(self, node_id: str) -> Mapping[str, Any]:
        return {"output": self._outputs[node_id]}

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


def variables(inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"inputs": inputs, "nodes": NodeOutputs(outputs)}


class Renderer:
    """Compiles each distinct template or expression once and renders it many times."""

    def __init__(self) -> None:
        self._environment = sandbox_environment()
        self._templates: dict[str, jinja2.Template] = {}
        self._expressions: dict[str, Any] = {}

    def render(self, text: str, scope: Mapping[str, Any], where: str) -> str:
        if "{" not in text:
            return text
        template = self._templates.get(text)
        try:
            if template is None:
                template = self._templates[text] = self._environment.from_string(text)
            return template.render(scope)
        except Exception as exc:
            raise _template_failure(where, exc) from None

    def render_value(self, text: str, scope: Mapping[str, Any], where: str) -> Any:
        """Like `render`, but a template that is exactly `{{ expression }}` keeps its type."""
        match = _SINGLE_EXPRESSION.match(text)
        if match is None:
            return self.render(text, scope, where)
        return self.evaluate(match["expression"], scope, where)

    def render_json(self, value: Any, scope: Mapping[str, Any], where: str) -> Any:
        """Render every string in a JSON value (an HTTP body), keeping single-expression types."""
        if isinstance(value, str):
            return self.render_value(value, scope, where)
        if isinstance(value, list):
            return [self.render_json(item, scope, f"{where}/{i}") for i, item in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.render_json(item, scope, f"{where}/{k}") for k, item in value.items()}
        return value

    def evaluate(self, expression: str, scope: Mapping[str, Any], where: str) -> Any:
        compiled = self._expressions.get(expression)
        try:
            if compiled is None:
                compiled = self._expressions[expression] = self._environment.compile_expression(
                    expression, undefined_to_none=False
                )
            value = compiled(scope)
        except Exception as exc:
            raise _template_failure(where, exc) from None
        if isinstance(value, jinja2.Undefined):
            raise NodeFailure("template.undefined", f"{where}: `{expression.strip()}` is undefined")
        return value


def _template_failure(where: str, exc: Exception) -> NodeFailure:
    if isinstance(exc, SecurityError):
        return NodeFailure("template.unsafe", f"{where}: the sandbox refused: {exc}")
    if isinstance(exc, jinja2.UndefinedError):
        return NodeFailure("template.undefined", f"{where}: {exc}")
    return NodeFailure("template.render_error", f"{where}: {type(exc).__name__}: {exc}")
