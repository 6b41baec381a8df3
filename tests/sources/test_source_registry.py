"""Source definitions, the adapter registry, sources files and secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentflow_grpc.model.errors import SourceConfigError, SpecReadError
from agentflow_grpc.model.failures import NodeFailure
from agentflow_grpc.model.sources import SourceDefinition
from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.sources.base import ChatModel, Database, HttpApi, ImageModel
from agentflow_grpc.sources.loading import load_source_definitions
from agentflow_grpc.sources.registry import SourceRegistry, SourceSet

OPENAI = SourceDefinition(name="llm", type="openai", secrets={"api_key": "k"})
POSTGRES = SourceDefinition(
    name="db", id="src_1", type="postgres", config={"dsn": "postgresql:///x"}
)
HTTP = SourceDefinition(name="api", type="http", config={"base_url": "https://api.example.com"})


def test_the_built_in_adapters_cover_every_source_type_the_validator_knows() -> None:
    from agentflow_grpc.spec.checks.references import SOURCE_TYPES_BY_NODE_TYPE

    known = set().union(*SOURCE_TYPES_BY_NODE_TYPE.values())
    runnable = set(SourceRegistry.default(metrics=Metrics()).types())
    assert runnable == {
        "openai",
        "azure_openai",
        "anthropic",
        "gemini",
        "postgres",
        "mysql",
        "http",
        "webhook",  # no node's: where runs' ends are told (docs/webhooks.md)
    }
    assert known <= runnable


async def test_sources_are_found_by_name_or_id_and_opened_once() -> None:
    sources = SourceSet([OPENAI, POSTGRES, HTTP])
    try:
        assert sources.types_by_name() == {
            "llm": "openai",
            "db": "postgres",
            "src_1": "postgres",
            "api": "http",
        }
        llm = await sources.get("llm")
        assert await sources.get("llm") is llm
        assert await sources.get("src_1") is await sources.get("db")
        assert isinstance(llm, ChatModel)
        assert isinstance(llm, ImageModel)
        assert isinstance(await sources.get("db"), Database)
        assert isinstance(await sources.get("api"), HttpApi)
        assert not isinstance(await sources.get("api"), ChatModel)
    finally:
        await sources.aclose()


async def test_an_unknown_source_fails_the_node_that_names_it() -> None:
    with pytest.raises(NodeFailure) as caught:
        await SourceSet([]).get("nope")
    assert caught.value.code == "source.unknown"
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (SourceDefinition(name="x", type="oracle"), "type 'oracle', which no adapter runs"),
        (SourceDefinition(name="x", type="openai"), "needs the secret `api_key`"),
        (
            SourceDefinition(
                name="x", type="openai", config={"modle": "m"}, secrets={"api_key": "k"}
            ),
            "modle",
        ),
        (
            SourceDefinition(name="x", type="azure_openai", secrets={"api_key": "k"}),
            "azure_endpoint",
        ),
        (SourceDefinition(name="x", type="http", config={"base_url": "ftp://x"}), "base_url"),
        (SourceDefinition(name="x", type="postgres"), "dsn"),
        (SourceDefinition(name="x", type="mysql", config={"dsn": "mysql://db/x"}), "no user"),
    ],
)
async def test_bad_configs_fail_early_with_check_and_clearly_at_run_time(
    definition: SourceDefinition, message: str
) -> None:
    sources = SourceSet([definition])
    with pytest.raises(SourceConfigError, match=message):
        sources.check()
    with pytest.raises(NodeFailure, match=message) as caught:
        await sources.get("x")
    assert caught.value.code == "source.invalid_config"


def test_a_name_defined_twice_is_refused() -> None:
    with pytest.raises(SourceConfigError, match="'llm' is defined twice"):
        SourceSet([OPENAI, OPENAI])


def test_secrets_never_show_in_repr_or_dumps() -> None:
    definition = SourceDefinition(name="x", type="openai", secrets={"api_key": "sk-very-secret"})
    assert "sk-very-secret" not in repr(definition)
    assert "sk-very-secret" not in definition.model_dump_json()


def test_a_sources_file_reads_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sources.json"
    path.write_text(
        json.dumps(
            {
                "sources": [
                    {"name": "a", "type": "openai", "secrets": {"api_key": {"env": "TEST_KEY"}}},
                    {"name": "b", "type": "openai", "secrets": {"api_key": "inline"}},
                ]
            }
        )
    )
    monkeypatch.setenv("TEST_KEY", "from-env")
    first, second = load_source_definitions(path)
    assert first.secrets["api_key"].get_secret_value() == "from-env"
    assert second.secrets["api_key"].get_secret_value() == "inline"
    monkeypatch.delenv("TEST_KEY")
    with pytest.raises(SpecReadError, match=r"secret 'api_key' of source 'a' reads \$TEST_KEY"):
        load_source_definitions(path)
    names = [d.name for d in load_source_definitions(path, resolve_secrets=False)]
    assert names == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"sources": {"a": 1}}, "expected a JSON list of sources"),
        ([1], "source #0 is not an object"),
        (
            [{"name": "a", "type": "openai", "secrets": {"k": 1}}],
            'must be a string or {"env": NAME}',
        ),
        ([{"name": "a", "type": "openai", "colour": "red"}], "colour: Extra inputs"),
    ],
)
def test_malformed_sources_files_name_the_problem(
    tmp_path: Path, content: object, message: str
) -> None:
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SpecReadError, match=message):
        load_source_definitions(path)
