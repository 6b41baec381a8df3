"""Reading spec documents from files, and turning a document into a checked WorkflowSpec."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentflow_grpc.model.errors import InvalidSpecError, SpecReadError
from agentflow_grpc.spec.checks.context import Limits
from agentflow_grpc.spec.models import WorkflowSpec
from agentflow_grpc.spec.plugins import PluginCatalog
from agentflow_grpc.spec.validator import validate_spec


def load_document(path: str | Path) -> Any:
    """The parsed JSON of a file; SpecReadError (with the reason) when unreadable or not JSON."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecReadError(f"{path}: cannot read: {reason}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise SpecReadError(f"{path}: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise SpecReadError(
            f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def parse_spec(
    document: Any,
    *,
    sources: Mapping[str, str] | None = None,
    plugins: PluginCatalog | None = None,
    limits: Limits | None = None,
) -> WorkflowSpec:
    """A WorkflowSpec with no violations, or InvalidSpecError carrying all of them."""
    result = validate_spec(document, sources=sources, plugins=plugins, limits=limits)
    if result.spec is None:
        raise InvalidSpecError(result.violations)
    return result.spec
