"""Every example workflow runs end to end against real local parts.

The LLM and image calls go to the fake OpenAI-compatible server through the real `openai` SDK;
the database nodes query a real PostgreSQL and a real MariaDB; the http nodes call a local
HTTP API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.runs import of_type, run_document, terminal

from agentflow_grpc.engine.execution import ExecutionEngine
from agentflow_grpc.model.events import EventType
from agentflow_grpc.model.sources import SourceDefinition

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

INPUTS: dict[str, dict[str, Any]] = {
    "blog-post-refine-loop": {"topic": "Observability for LLM apps"},
    "company-enrichment": {"account_id": "acc_ab12cd34"},
    "contract-clause-review": {"contract_text": "Either party may end this agreement on notice."},
    "invoice-extraction": {"invoice_text": "Invoice 17: 3 widgets at 9.99 EUR"},
    "lead-qualification": {
        "email": "Ada@Example.com",
        "company": "Acme",
        "message": "We need 40 seats",
    },
    "meeting-action-items": {
        "transcript": "Ada will send the report by Friday.",
        "create_tasks": True,
    },
    "multilingual-translation": {"text": "Good morning"},
    "order-status-report-mysql": {"customer_id": 42, "since": "2024-01-01"},
    "parallel-summaries": {"document": "A long design document. " * 10},
    "product-image-generation": {"description": "A brass desk lamp"},
    "recipe-card": {"dish": "Mushroom risotto", "ingredients": ["arborio rice", "mushrooms"]},
    "sales-report-chart": {"start_date": "2024-01-01", "end_date": "2024-03-01"},
    "sql-question-answering": {"customer_id": 42, "question": "What did I order?"},
    "support-triage": {"subject": "Refund", "body": "I was charged twice"},
}


def test_every_example_has_inputs() -> None:
    assert sorted(INPUTS) == sorted(path.stem for path in EXAMPLES.glob("*.json"))


@pytest.mark.parametrize("name", sorted(INPUTS))
async def test_example_runs_end_to_end(
    name: str, engine: ExecutionEngine, example_sources: list[SourceDefinition]
) -> None:
    document = json.loads((EXAMPLES / f"{name}.json").read_text())
    events = await run_document(engine, document, example_sources, INPUTS[name])
    end = terminal(events)
    assert end.type is EventType.EXECUTION_COMPLETED, end.data
    assert set(end.data["outputs"]) == set(document["outputs"])
    completed = {event.node_id for event in of_type(events, EventType.NODE_COMPLETED)}
    assert completed, "no node completed"
    assert not of_type(events, EventType.NODE_FAILED)
