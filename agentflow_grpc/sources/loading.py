"""Read source definitions from a JSON file (the CLI's `--sources FILE`).

The file is `{"sources": [...]}` or a bare list. Each source is `{name, type, config, secrets}`;
a secret is a string or `{"env": "VARIABLE"}`, read from the environment so that keys stay out of
files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentflow_grpc.model.errors import SpecReadError
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.spec import load_document


def load_source_definitions(path: Path, *, resolve_secrets: bool = True) -> list[SourceDefinition]:
    document = load_document(path)
    if isinstance(document, dict) and "sources" in document:
        document = document["sources"]
    if not isinstance(document, list):
        raise SpecReadError(f"{path}: expected a JSON list of sources")
    definitions: list[SourceDefinition] = []
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise SpecReadError(f"{path}: source #{index} is not an object")
        item = dict(item)
        secrets = item.pop("secrets", {})
        if resolve_secrets:
            item["secrets"] = _resolve_secrets(path, item.get("name"), secrets)
        try:
            definitions.append(SourceDefinition.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            raise SpecReadError(f"{path}: source #{index}: {problems}") from None
    return definitions


def _resolve_secrets(path: Path, name: object, secrets: Any) -> dict[str, str]:
    if not isinstance(secrets, dict):
        raise SpecReadError(f"{path}: source {name!r}: `secrets` must be an object")
    resolved: dict[str, str] = {}
    for key, value in secrets.items():
        if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
            variable = value["env"]
            if variable not in os.environ:
                raise SpecReadError(
                    f"{path}: secret {key!r} of source {name!r} reads ${variable}, which is not set"
                )
            resolved[key] = os.environ[variable]
        elif isinstance(value, str):
            resolved[key] = value
        else:
            raise SpecReadError(
                f'{path}: secret {key!r} of source {name!r} must be a string or {{"env": NAME}}'
            )
    return resolved
