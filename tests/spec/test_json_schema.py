"""The committed JSON Schema is the one the models generate, and it accepts the examples."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from agentflow_grpc.spec import workflow_json_schema
from agentflow_grpc.spec.schema import workflow_json_schema_text

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))


def test_committed_schema_matches_the_models(repo_root: Path) -> None:
    committed = (repo_root / "schemas" / "workflow.schema.json").read_text()
    assert committed == workflow_json_schema_text(), (
        "schemas/workflow.schema.json is stale: run `make schema`"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(workflow_json_schema())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_satisfy_the_schema(path: Path) -> None:
    jsonschema.Draft202012Validator(workflow_json_schema()).validate(json.loads(path.read_text()))


def test_schema_names_every_node_type() -> None:
    schema = workflow_json_schema()
    mapping = schema["properties"]["nodes"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == {
        "input", "router", "llm", "image", "database", "aggregator", "http", "plugin"
    }  # fmt: skip


def test_schema_rejects_what_the_models_reject() -> None:
    validator = jsonschema.Draft202012Validator(workflow_json_schema())
    document = json.loads(EXAMPLES[0].read_text())
    document["nodes"][0]["colour"] = "red"
    assert not validator.is_valid(document)
