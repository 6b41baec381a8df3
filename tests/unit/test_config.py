"""Settings: defaults, environment overrides, clear errors, and the README's table kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentflow_grpc.config import ENV_PREFIX, Settings, load_settings
from agentflow_grpc.errors import ConfigurationError
from agentflow_grpc.spec import Limits


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"{ENV_PREFIX}{name.upper()}", raising=False)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.log_level == "INFO"
    assert settings.log_format == "auto"
    assert settings.spec_limits() == Limits()


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("AGENTFLOW_LOG_FORMAT", "json")
    monkeypatch.setenv("AGENTFLOW_MAX_NODES", "10")
    monkeypatch.setenv("AGENTFLOW_MAX_EDGES", "20")
    monkeypatch.setenv("AGENTFLOW_MAX_PROMPT_CHARS", "300")
    settings = load_settings()
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"
    assert settings.spec_limits() == Limits(max_nodes=10, max_edges=20, max_prompt_chars=300)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGENTFLOW_LOG_LEVEL", "LOUD"),
        ("AGENTFLOW_MAX_NODES", "0"),
        ("AGENTFLOW_MAX_EDGES", "many"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"^invalid configuration: {variable}: "):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.max_nodes = 5  # type: ignore[misc]


def test_readme_documents_every_setting(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    documented = set(re.findall(r"^\| `(AGENTFLOW_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    expected = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert documented == expected
