"""The JSON Schema of WorkflowSpec, generated from the pydantic models (never written by hand)."""

from __future__ import annotations

import json
from typing import Any

from agentflow_grpc.spec.models import WorkflowSpec

SCHEMA_ID = "https://agentflow.dev/schemas/workflow.schema.json"


def workflow_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a WorkflowSpec document, as editors and clients use it."""
    schema = WorkflowSpec.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
    }


def workflow_json_schema_text() -> str:
    """The schema as committed in `schemas/workflow.schema.json`."""
    return json.dumps(workflow_json_schema(), indent=2, ensure_ascii=False) + "\n"
