"""Custom node types ("plugins") as the validator sees them: a name and a config schema.

A plugin package exposes an object satisfying `PluginDefinition` under the entry-point group
`agentflow.plugins`; `PluginCatalog.from_entry_points()` collects them. The runtime's node registry
uses the same objects, adding how they run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import jsonschema

from agentflow_grpc.model.errors import AgentFlowError

ENTRY_POINT_GROUP = "agentflow.plugins"


@runtime_checkable
class PluginDefinition(Protocol):
    @property
    def name(self) -> str:
        """The value of a plugin node's `plugin` field, e.g. `acme.sentiment`."""

    @property
    def config_schema(self) -> Mapping[str, Any]:
        """JSON Schema (draft 2020-12) of the node's `config`."""

    @property
    def template_keys(self) -> frozenset[str]:
        """Top-level config keys whose string values are templates."""

    @property
    def source_types(self) -> frozenset[str]:
        """Source types the node accepts in `source`; empty when it takes none."""


@dataclass(frozen=True, slots=True)
class PluginType:
    """A plain `PluginDefinition`, for plugins that need nothing more."""

    name: str
    config_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    template_keys: frozenset[str] = frozenset()
    source_types: frozenset[str] = frozenset()


class PluginError(AgentFlowError):
    """A plugin that cannot be registered: bad schema, duplicate name, wrong object."""

    code = "plugin"


class PluginCatalog:
    """The plugin types known to one validator; explicit registration, no import-time magic."""

    def __init__(self, plugins: Iterable[PluginDefinition] = ()) -> None:
        self._plugins: dict[str, PluginDefinition] = {}
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        for plugin in plugins:
            self.register(plugin)

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> PluginCatalog:
        catalog = cls()
        for entry_point in entry_points(group=group):
            try:
                plugin = entry_point.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin entry point {entry_point.name!r} ({entry_point.value}) failed to "
                    f"load: {exc}"
                ) from exc
            catalog.register(plugin)
        return catalog

    def register(self, plugin: object) -> None:
        if not isinstance(plugin, PluginDefinition):
            raise PluginError(f"{plugin!r} is not a plugin definition (name, config_schema, …)")
        if plugin.name in self._plugins:
            raise PluginError(f"plugin type {plugin.name!r} is registered twice")
        validator_class = jsonschema.validators.validator_for(
            plugin.config_schema, default=jsonschema.Draft202012Validator
        )
        try:
            validator_class.check_schema(dict(plugin.config_schema))
        except jsonschema.SchemaError as exc:
            raise PluginError(
                f"plugin {plugin.name!r} has an invalid config schema: {exc.message}"
            ) from exc
        self._plugins[plugin.name] = plugin
        self._validators[plugin.name] = validator_class(plugin.config_schema)

    def get(self, name: str) -> PluginDefinition | None:
        return self._plugins.get(name)

    def plugins(self) -> list[PluginDefinition]:
        return list(self._plugins.values())

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def config_errors(
        self, name: str, config: Mapping[str, Any]
    ) -> list[jsonschema.ValidationError]:
        try:
            errors = list(self._validators[name].iter_errors(config))
        except RecursionError:
            return [jsonschema.ValidationError("config is nested too deeply to check")]
        return sorted(errors, key=lambda error: [str(part) for part in error.path])
