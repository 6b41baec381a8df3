"""The example workflows in examples/: the valid ones validate, the invalid ones fail as documented.

examples/*.json are complete, realistic workflows: each must validate with no violation and survive
a round trip through the models. examples/invalid/*.json each show one violation code; their
manifest (examples/invalid/manifest.json) names the code, the JSON Pointer it is reported at, any
other codes that inevitably come with it, and the sources, plugins and limits to validate with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentflow_grpc.spec import (
    Limits,
    PluginCatalog,
    PluginType,
    ViolationCode,
    WorkflowSpec,
    validate_spec,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INVALID = EXAMPLES / "invalid"
MANIFEST_PATH = INVALID / "manifest.json"

MIN_VALID_EXAMPLES = 8

EXAMPLE_SOURCES = {
    "openai-main": "openai",
    "anthropic-main": "anthropic",
    "gemini-main": "gemini",
    "warehouse-db": "postgres",
    "warehouse-mysql": "mysql",
    "crm-api": "http",
}
"""The sources the valid examples are written against, by type."""

MANIFEST_KEYS = frozenset({"code", "path", "also", "sources", "limits", "plugins"})


def _plugin_catalog() -> PluginCatalog:
    return PluginCatalog(
        [
            PluginType(
                name="acme.sentiment",
                config_schema={
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "language": {"type": "string"},
                        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "required": ["language"],
                    "additionalProperties": False,
                },
                template_keys=frozenset({"text"}),
                source_types=frozenset({"openai"}),
            )
        ]
    )


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _manifest() -> dict[str, dict[str, Any]]:
    manifest: dict[str, dict[str, Any]] = _load(MANIFEST_PATH)
    return manifest


VALID_FILES = sorted(EXAMPLES.glob("*.json"))
INVALID_FILES = sorted(p for p in INVALID.glob("*.json") if p.name != MANIFEST_PATH.name)
MANIFEST = _manifest()


# --- valid examples ---


def test_there_are_enough_valid_examples() -> None:
    assert len(VALID_FILES) >= MIN_VALID_EXAMPLES


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_example_has_no_violations(path: Path) -> None:
    result = validate_spec(_load(path))
    assert result.violations == ()
    assert result.ok
    assert result.spec is not None


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_example_uses_known_compatible_sources(path: Path) -> None:
    result = validate_spec(_load(path), sources=EXAMPLE_SOURCES)
    assert result.violations == ()
    assert result.warnings == ()  # examples show nothing a user should not copy


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_example_name_is_file_stem(path: Path) -> None:
    assert _load(path)["name"] == path.stem


@pytest.mark.parametrize("path", VALID_FILES, ids=lambda p: p.name)
def test_valid_example_round_trips(path: Path) -> None:
    document = _load(path)
    spec = WorkflowSpec.model_validate(document)
    again = spec.to_document()
    assert WorkflowSpec.model_validate(again) == spec
    assert validate_spec(again).ok
    # JSON-ready: the document survives serialization unchanged.
    assert json.loads(json.dumps(again)) == again


# --- invalid examples ---


@pytest.mark.parametrize("name", sorted(MANIFEST), ids=str)
def test_invalid_example_reports_its_code(name: str) -> None:
    entry = MANIFEST[name]
    assert set(entry) <= MANIFEST_KEYS, f"unknown manifest keys in {name}"
    result = validate_spec(
        _load(INVALID / name),
        sources=entry.get("sources"),
        plugins=_plugin_catalog() if entry.get("plugins") else PluginCatalog(),
        limits=Limits(**entry.get("limits", {})),
    )
    found = [(v.code.value, v.path) for v in result.violations]
    assert (entry["code"], entry["path"]) in found
    assert {code for code, _ in found} == {entry["code"], *entry.get("also", [])}
    assert not result.ok
    assert result.spec is None


def test_every_violation_code_has_an_invalid_example() -> None:
    covered = {entry["code"] for entry in MANIFEST.values()}
    assert {code.value for code in ViolationCode} - covered == set()


def test_manifest_codes_are_violation_codes() -> None:
    known = {code.value for code in ViolationCode}
    for name, entry in MANIFEST.items():
        assert entry["code"] in known, name
        assert set(entry.get("also", [])) <= known, name


def test_every_invalid_example_is_in_the_manifest() -> None:
    assert {p.name for p in INVALID_FILES} == set(MANIFEST)
