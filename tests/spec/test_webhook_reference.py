"""A spec's `webhook` names a stored source of type `webhook`: checked when the validator is
given the tenant's sources, reported at `/webhook/source` like the nodes' source references."""

from __future__ import annotations

from typing import Any

from spec_documents import spec_with_node

from agentflow_grpc.spec import validate_spec

SOURCES = {"hook": "webhook", "crm": "http", "llm": "openai"}
NODE = {"id": "reply", "type": "llm", "source": "llm", "config": {"prompt": "Hi"}}


def with_webhook(webhook: Any, **extra: Any) -> dict[str, Any]:
    return {
        **spec_with_node(NODE, name="hooked"),
        **extra,
        "webhook": webhook,
    }


def found(
    document: dict[str, Any], sources: dict[str, str] | None = SOURCES
) -> list[tuple[str, str]]:
    return [(v.path, v.code) for v in validate_spec(document, sources=sources).violations]


def test_a_webhook_source_of_type_webhook_is_valid_and_kept_in_the_spec() -> None:
    result = validate_spec(with_webhook({"source": "hook"}), sources=SOURCES)
    assert result.ok, result.violations
    assert result.spec is not None
    assert result.spec.webhook is not None
    assert result.spec.webhook.source == "hook"
    assert result.spec.to_document()["webhook"] == {"source": "hook"}


def test_a_missing_source_is_unknown_with_a_suggestion() -> None:
    result = validate_spec(with_webhook({"source": "hok"}), sources=SOURCES)
    ((path, code, message),) = [(v.path, v.code, v.message) for v in result.violations]
    assert (path, code) == ("/webhook/source", "source.unknown")
    assert "did you mean 'hook'?" in message


def test_a_source_of_another_type_is_incompatible() -> None:
    assert found(with_webhook({"source": "crm"})) == [("/webhook/source", "source.incompatible")]


def test_without_the_tenants_sources_the_reference_is_not_checked() -> None:
    assert found(with_webhook({"source": "anything"}), sources=None) == []


def test_a_malformed_webhook_is_a_schema_violation() -> None:
    assert found(with_webhook({"source": "hook", "url": "https://x"}))[0][0] == "/webhook/url"
    assert found(with_webhook({"source": ""}))[0][0] == "/webhook/source"


def test_the_reference_is_checked_when_another_part_of_the_spec_is_broken() -> None:
    document = with_webhook({"source": "nope"}, title=5)
    assert ("/webhook/source", "source.unknown") in found(document)
