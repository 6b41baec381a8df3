"""PluginCatalog: registration, config checks, entry-point discovery, use by validate_spec."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from spec_documents import spec_with_node

from agentflow_grpc.observability.metrics import Metrics
from agentflow_grpc.spec.codes import ViolationCode
from agentflow_grpc.spec.plugins import (
    ENTRY_POINT_GROUP,
    PluginCatalog,
    PluginDefinition,
    PluginError,
    PluginType,
)
from agentflow_grpc.spec.validator import validate_spec

SENTIMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "options": {
            "type": "object",
            "properties": {"lang": {"type": "string"}, "threshold": {"type": "number"}},
        },
        "labels": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["text"],
    "additionalProperties": False,
}


def sentiment(name: str = "acme.sentiment") -> PluginType:
    return PluginType(name, SENTIMENT_SCHEMA, template_keys=frozenset({"text"}))


# --- explicit registration ---


def test_register_and_look_up() -> None:
    catalog = PluginCatalog()
    plugin = sentiment()

    catalog.register(plugin)

    assert catalog.get("acme.sentiment") is plugin
    assert catalog.get("acme.other") is None
    assert catalog.names() == ["acme.sentiment"]


def test_constructor_registers_in_order_and_names_are_sorted() -> None:
    catalog = PluginCatalog([PluginType("zeta.b"), PluginType("alpha.a")])

    assert catalog.names() == ["alpha.a", "zeta.b"]


def test_plugin_type_satisfies_the_protocol() -> None:
    assert isinstance(PluginType("acme.x"), PluginDefinition)


def test_custom_class_satisfying_the_protocol() -> None:
    @dataclass(frozen=True)
    class Custom:
        name: str = "acme.custom"
        template_keys: frozenset[str] = frozenset()
        source_types: frozenset[str] = frozenset({"http"})

        @property
        def config_schema(self) -> Mapping[str, Any]:
            return {"type": "object", "required": ["url"]}

    catalog = PluginCatalog([Custom()])

    assert catalog.names() == ["acme.custom"]
    assert [error.validator for error in catalog.config_errors("acme.custom", {})] == ["required"]


def test_duplicate_name_is_an_error() -> None:
    catalog = PluginCatalog([sentiment()])

    with pytest.raises(PluginError, match=r"'acme\.sentiment' is registered twice"):
        catalog.register(PluginType("acme.sentiment"))
    assert catalog.get("acme.sentiment") == sentiment()


def test_duplicate_in_constructor_is_an_error() -> None:
    with pytest.raises(PluginError, match="registered twice"):
        PluginCatalog([PluginType("acme.x"), PluginType("acme.x")])


@dataclass(frozen=True)
class _MissingTemplateKeys:
    name: str = "acme.partial"
    config_schema: Mapping[str, Any] | None = None
    source_types: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    "plugin",
    [object(), "acme.sentiment", {"name": "acme.x", "config_schema": {}}, _MissingTemplateKeys()],
)
def test_object_not_satisfying_the_protocol_is_an_error(plugin: object) -> None:
    catalog = PluginCatalog()

    with pytest.raises(PluginError, match="is not a plugin definition"):
        catalog.register(plugin)
    assert catalog.names() == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "no-such-type"},
        {"type": "object", "properties": {"a": {"type": 5}}},
        {"type": "object", "required": "text"},
        {"minimum": "zero"},
    ],
)
def test_invalid_config_schema_is_an_error(schema: dict[str, Any]) -> None:
    catalog = PluginCatalog()

    with pytest.raises(PluginError, match=r"'acme\.bad' has an invalid config schema"):
        catalog.register(PluginType("acme.bad", schema))
    assert catalog.get("acme.bad") is None


def test_config_errors_for_valid_config() -> None:
    catalog = PluginCatalog([sentiment()])

    assert catalog.config_errors("acme.sentiment", {"text": "hi", "labels": ["a"]}) == []


def test_config_errors_have_paths_into_the_config() -> None:
    catalog = PluginCatalog([sentiment()])
    config = {
        "text": 5,
        "options": {"lang": 3, "threshold": "high"},
        "labels": ["ok", 7],
        "extra": True,
    }

    errors = catalog.config_errors("acme.sentiment", config)

    paths = [list(error.absolute_path) for error in errors]
    assert sorted(map(str, paths)) == sorted(
        map(str, [[], ["labels", 1], ["options", "lang"], ["options", "threshold"], ["text"]])
    )
    # Sorted by path, the document-level error (additionalProperties) first.
    assert paths[0] == []
    assert errors[0].validator == "additionalProperties"
    assert paths == sorted(paths, key=lambda path: [str(part) for part in path])


def test_config_errors_for_missing_required_field() -> None:
    catalog = PluginCatalog([sentiment()])

    errors = catalog.config_errors("acme.sentiment", {})

    assert [(list(e.absolute_path), e.validator) for e in errors] == [([], "required")]
    assert "'text'" in errors[0].message


def test_schema_declaring_its_draft_uses_that_draft() -> None:
    # Draft 4 `exclusiveMaximum` is a boolean; it is invalid in draft 2020-12.
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"n": {"type": "number", "maximum": 3, "exclusiveMaximum": True}},
    }
    catalog = PluginCatalog([PluginType("acme.old", schema)])

    assert [list(e.absolute_path) for e in catalog.config_errors("acme.old", {"n": 3})] == [["n"]]
    assert catalog.config_errors("acme.old", {"n": 2}) == []


# --- entry points of an installed distribution ---


def install_distribution(
    root: Path, *, dist: str, module: str, source: str, entry_points: dict[str, str]
) -> None:
    """Lay out an installed distribution in `root`: a module and its `.dist-info`."""
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8"
    )
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


Installer = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: None) -> Installer:
    """Install a plugin distribution into a fresh directory on sys.path."""

    def _install(
        entry_points: dict[str, str], *, dist: str = "acme_plugins", source: str | None = None
    ) -> None:
        code = ACME_SOURCE if source is None else source
        install_distribution(
            tmp_path, dist=dist, module=dist, source=code, entry_points=entry_points
        )
        monkeypatch.syspath_prepend(str(tmp_path))

    return _install


@pytest.fixture
def forget_modules() -> Iterator[None]:
    """Import the test's plugin modules afresh, and drop them from sys.modules afterwards."""
    modules = ("acme_plugins", "acme_broken_plugins")
    for module in modules:
        sys.modules.pop(module, None)
    yield
    for module in modules:
        sys.modules.pop(module, None)


ACME_SOURCE = """
    from agentflow_grpc.spec.plugins import PluginType

    SENTIMENT = PluginType(
        "acme.sentiment",
        {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "options": {"type": "object", "properties": {"lang": {"type": "string"}}},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        template_keys=frozenset({"text"}),
    )
    NOT_A_PLUGIN = object()
"""


def test_from_entry_points_finds_an_installed_plugin(install: Installer) -> None:
    install({"sentiment": "acme_plugins:SENTIMENT"})

    catalog = PluginCatalog.from_entry_points()

    plugin = catalog.get("acme.sentiment")
    assert plugin is not None
    assert plugin.template_keys == {"text"}
    assert type(plugin) is PluginType
    assert "acme.sentiment" in catalog.names()


def test_from_entry_points_without_the_distribution_does_not_see_it() -> None:
    assert PluginCatalog.from_entry_points().get("acme.sentiment") is None


def test_from_entry_points_with_another_group(install: Installer) -> None:
    install({"sentiment": "acme_plugins:SENTIMENT"})

    assert PluginCatalog.from_entry_points(group="agentflow.other").names() == []


def test_entry_point_that_fails_to_import_names_itself(install: Installer) -> None:
    install(
        {"broken": "acme_broken_plugins:PLUGIN"},
        dist="acme_broken_plugins",
        source="raise RuntimeError('boom at import')\n",
    )

    with pytest.raises(PluginError, match="'broken'") as caught:
        PluginCatalog.from_entry_points()

    assert "acme_broken_plugins:PLUGIN" in str(caught.value)
    assert "boom at import" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    ("name", "target", "message"),
    [
        ("ghost", "acme_no_such_module:PLUGIN", "'ghost'"),
        ("bogus", "acme_plugins:NOT_A_PLUGIN", "is not a plugin definition"),
    ],
)
def test_entry_point_to_something_that_is_not_a_plugin(
    install: Installer, name: str, target: str, message: str
) -> None:
    install({name: target})

    with pytest.raises(PluginError, match=message):
        PluginCatalog.from_entry_points()


# --- end to end through validate_spec ---


def plugin_spec(config: dict[str, Any]) -> dict[str, Any]:
    node = {"id": "mood", "type": "plugin", "plugin": "acme.sentiment", "config": config}
    return spec_with_node(node, inputs={"message": {"type": "string"}}, name="plugin-flow")


@pytest.fixture
def installed_catalog(install: Installer) -> PluginCatalog:
    install({"sentiment": "acme_plugins:SENTIMENT"})
    return PluginCatalog.from_entry_points()


def test_spec_using_an_installed_plugin_validates(installed_catalog: PluginCatalog) -> None:
    result = validate_spec(
        plugin_spec({"text": "{{ inputs.message }}", "options": {"lang": "en"}}),
        plugins=installed_catalog,
    )

    assert result.violations == ()
    assert result.ok
    assert result.spec is not None


def test_bad_plugin_config_points_into_the_config(installed_catalog: PluginCatalog) -> None:
    result = validate_spec(
        plugin_spec({"text": "hi", "options": {"lang": 3}}), plugins=installed_catalog
    )

    assert [(v.path, v.code) for v in result.violations] == [
        ("/nodes/1/config/options/lang", ViolationCode.PLUGIN_INVALID_CONFIG)
    ]
    assert "acme.sentiment" in result.violations[0].message
    assert result.spec is None


def test_missing_plugin_config_field_points_at_the_config(
    installed_catalog: PluginCatalog,
) -> None:
    result = validate_spec(plugin_spec({}), plugins=installed_catalog)

    assert [(v.path, v.code) for v in result.violations] == [
        ("/nodes/1/config", ViolationCode.PLUGIN_INVALID_CONFIG)
    ]


def test_plugin_template_keys_are_checked(installed_catalog: PluginCatalog) -> None:
    result = validate_spec(plugin_spec({"text": "{{ inputs.nope }}"}), plugins=installed_catalog)

    assert [(v.path, v.code) for v in result.violations] == [
        ("/nodes/1/config/text", ViolationCode.TEMPLATE_UNKNOWN_INPUT)
    ]


def test_unregistered_plugin_is_reported() -> None:
    result = validate_spec(plugin_spec({"text": "hi"}), plugins=PluginCatalog())

    assert [(v.path, v.code) for v in result.violations] == [
        ("/nodes/1/plugin", ViolationCode.PLUGIN_UNKNOWN_TYPE)
    ]


RUNNABLE_SOURCE = """
    from agentflow_grpc.spec.plugins import PluginType

    class Shout:
        name = "acme.shout"
        config_schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        template_keys = frozenset({"text"})
        source_types = frozenset()

        async def run(self, node, context):
            context.emit_token("…")
            return {"text": context.render(node.config["text"], "config.text").upper()}

    SHOUT = Shout()
    SCHEMA_ONLY = PluginType("acme.schema_only")
"""


async def test_an_installed_plugin_with_run_executes_in_a_workflow(install: Installer) -> None:
    from agentflow_grpc.engine.execution import ExecutionEngine
    from agentflow_grpc.nodes.registry import NodeRegistry
    from agentflow_grpc.sources.registry import SourceSet

    install(
        {"shout": "acme_plugins:SHOUT", "quiet": "acme_plugins:SCHEMA_ONLY"}, source=RUNNABLE_SOURCE
    )
    registry = NodeRegistry.from_entry_points()
    assert registry.catalog.names() == ["acme.schema_only", "acme.shout"]
    document = {
        "api_version": "agentflow/v1",
        "name": "shouting",
        "inputs": {"name": {"type": "string"}},
        "outputs": {"loud": {"from": "nodes.shout.output.text"}},
        "nodes": [
            {"id": "start", "type": "input"},
            {
                "id": "shout",
                "type": "plugin",
                "plugin": "acme.shout",
                "config": {"text": "hello {{ inputs.name }}"},
            },
        ],
        "edges": [{"from": "start", "to": "shout"}],
    }
    result = validate_spec(document, plugins=registry.catalog)
    assert result.spec is not None, result.violations
    engine = ExecutionEngine(metrics=Metrics(), registry=registry)
    events = [e async for e in engine.execute(result.spec, {"name": "ada"}, sources=SourceSet([]))]
    assert [e.type.value for e in events if e.node_id == "shout"] == [
        "node_started",
        "node_token",
        "node_completed",
    ]
    assert events[-1].data["outputs"] == {"loud": "HELLO ADA"}
