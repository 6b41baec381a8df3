"""Settings: defaults, environment overrides, clear errors, and the README's table kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentflow_grpc.config import Settings, load_settings, variable_name
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.spec import Limits


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(variable_name(name), raising=False)
    monkeypatch.delenv("AGENTFLOW_DATABASE_URL", raising=False)


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
    documented = set(re.findall(r"^\| `([A-Z][A-Z_]+)` \|", readme, flags=re.MULTILINE))
    expected = {variable_name(name) for name in Settings.model_fields}
    assert documented == expected


def test_database_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://agentflow:pw@db.internal/agentflow")
    monkeypatch.setenv("AGENTFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AGENTFLOW_DATABASE_POOL_MAX", "25")
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().endswith("@db.internal/agentflow")
    assert "pw" not in repr(settings)  # the DSN's password stays out of logs and reprs
    assert settings.home == tmp_path
    assert settings.database_pool_max == 25


def test_no_database_url_means_the_embedded_server() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.home.name == "agentflow"


def test_pool_bounds_are_checked_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_DATABASE_POOL_MIN", "20")
    monkeypatch.setenv("AGENTFLOW_DATABASE_POOL_MAX", "10")
    with pytest.raises(ConfigurationError, match=r"AGENTFLOW_DATABASE_POOL_MIN \(20\) is larger"):
        load_settings()


def test_secret_keys_are_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_SECRET_KEYS", "k1:c2VjcmV0")
    settings = load_settings()
    assert settings.secret_keys is not None
    assert "c2VjcmV0" not in repr(settings)


def test_the_metrics_port_picks_a_free_one_by_default_and_minus_one_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 0)
    monkeypatch.setenv("AGENTFLOW_METRICS_PORT", "-1")
    assert load_settings().metrics_port == -1
    monkeypatch.setenv("AGENTFLOW_METRICS_PORT", "-2")
    with pytest.raises(ConfigurationError, match="AGENTFLOW_METRICS_PORT"):
        load_settings()
