"""Check a run's inputs against the spec's declared `inputs`, and apply defaults.

This runs before any node does, so a bad input rejects the run with every problem listed (JSON
Pointers under `/inputs`), and again inside the input node, which owns the checked values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema

from agentflow_grpc.model.errors import InputViolation, InvalidInputsError
from agentflow_grpc.spec import WorkflowSpec
from agentflow_grpc.spec.codes import pointer, pointer_sort_key


class InputChecker:
    """The declared inputs of one spec as a JSON Schema validator, built once per compiled spec."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self._spec = spec
        schema = {
            "type": "object",
            "properties": {name: param.to_json_schema() for name, param in spec.inputs.items()},
            "required": [name for name, param in spec.inputs.items() if param.is_required],
            "additionalProperties": False,
        }
        self._validator = jsonschema.Draft202012Validator(schema)

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs with defaults applied; raises InvalidInputsError listing every problem."""
        violations: list[InputViolation] = []
        for error in self._validator.iter_errors(dict(inputs)):
            violations.extend(_violations(self._spec, error))
        if violations:
            violations.sort(key=lambda violation: pointer_sort_key(violation.path))
            raise InvalidInputsError(violations)
        checked = dict(inputs)
        for name, param in self._spec.inputs.items():
            if name not in checked and param.has_default:
                checked[name] = copy.deepcopy(param.default)
        return checked


def _violations(spec: WorkflowSpec, error: jsonschema.ValidationError) -> list[InputViolation]:
    location = [str(part) for part in error.absolute_path]
    instance: Any = error.instance
    expected: Any = error.validator_value
    if error.validator == "required" and not location:
        missing = [name for name in expected if name not in (instance or {})]
        return [
            InputViolation(
                pointer("inputs", name),
                "input.missing",
                f"the required input `{name}` is missing"
                + _described(spec.inputs[name].description),
            )
            for name in missing
        ]
    if error.validator == "additionalProperties" and not location:
        declared = ", ".join(sorted(spec.inputs)) or "none"
        unknown = sorted(set(instance) - set(spec.inputs))
        return [
            InputViolation(
                pointer("inputs", name),
                "input.unknown",
                f"`{name}` is not a declared input (declared: {declared})",
            )
            for name in unknown
        ]
    return [InputViolation(pointer("inputs", *location), "input.invalid", error.message)]


def _described(description: str | None) -> str:
    return f" ({description})" if description else ""
