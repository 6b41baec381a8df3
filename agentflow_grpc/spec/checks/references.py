"""References to things outside the spec: stored sources and registered plugin types."""

from __future__ import annotations

from collections.abc import Iterator

from agentflow_grpc.spec.checks.context import CheckContext, article, listing, suggestion
from agentflow_grpc.spec.codes import Violation, ViolationCode, WarningCode, pointer
from agentflow_grpc.spec.nodes import LlmNode, PluginNode

LLM_SOURCE_TYPES = frozenset({"openai", "anthropic", "gemini", "azure_openai"})
SOURCE_TYPES_BY_NODE_TYPE: dict[str, frozenset[str]] = {
    "llm": LLM_SOURCE_TYPES,
    "aggregator": LLM_SOURCE_TYPES,
    "image": frozenset({"openai", "azure_openai", "gemini"}),
    "database": frozenset({"postgres", "mysql"}),
    "http": frozenset({"http"}),
}
"""Which source types each built-in node type can use."""


def check_sources(ctx: CheckContext) -> Iterator[Violation]:
    if ctx.sources is None:
        return
    for entry in ctx.view.nodes:
        source = getattr(entry.model, "source", None)
        if source is None:
            continue
        path = pointer("nodes", entry.index, "source")
        source_type = ctx.sources.get(source)
        if source_type is None:
            yield Violation(
                path,
                ViolationCode.SOURCE_UNKNOWN,
                f"source '{source}' does not exist (known: {listing(ctx.sources)})"
                + suggestion(source, ctx.sources),
            )
            continue
        accepted = _accepted_source_types(ctx, entry.model)
        if accepted is not None and source_type not in accepted:
            yield Violation(
                path,
                ViolationCode.SOURCE_INCOMPATIBLE,
                f"source '{source}' is of type {source_type}, which {article(entry.type)} "
                f"node cannot use (it takes {listing(accepted)})",
            )


WEBHOOK_SOURCE_TYPE = "webhook"


def check_webhook(ctx: CheckContext) -> Iterator[Violation]:
    """The spec's `webhook` names a stored source of type `webhook`."""
    source = ctx.view.webhook_source
    if ctx.sources is None or source is None:
        return
    path = pointer("webhook", "source")
    source_type = ctx.sources.get(source)
    if source_type is None:
        webhooks = [name for name, kind in ctx.sources.items() if kind == WEBHOOK_SOURCE_TYPE]
        yield Violation(
            path,
            ViolationCode.SOURCE_UNKNOWN,
            f"source '{source}' does not exist (webhook sources: {listing(webhooks)})"
            + suggestion(source, webhooks),
        )
    elif source_type != WEBHOOK_SOURCE_TYPE:
        yield Violation(
            path,
            ViolationCode.SOURCE_INCOMPATIBLE,
            f"source '{source}' is of type {source_type}; a webhook needs a source of type "
            f"{WEBHOOK_SOURCE_TYPE}",
        )


def _accepted_source_types(ctx: CheckContext, node: object) -> frozenset[str] | None:
    if isinstance(node, PluginNode):
        plugin = ctx.plugins.get(node.plugin)
        return None if plugin is None else frozenset(plugin.source_types)
    return SOURCE_TYPES_BY_NODE_TYPE.get(getattr(node, "type", ""))


def check_plugins(ctx: CheckContext) -> Iterator[Violation]:
    for entry in ctx.view.nodes:
        node = entry.model
        if not isinstance(node, PluginNode):
            continue
        if ctx.plugins.get(node.plugin) is None:
            known = ctx.plugins.names()
            yield Violation(
                pointer("nodes", entry.index, "plugin"),
                ViolationCode.PLUGIN_UNKNOWN_TYPE,
                f"plugin type '{node.plugin}' is not registered (registered: "
                f"{listing(known)}){suggestion(node.plugin, known)}",
            )
            continue
        for error in ctx.plugins.config_errors(node.plugin, node.config):
            yield Violation(
                pointer("nodes", entry.index, "config", *error.absolute_path),
                ViolationCode.PLUGIN_INVALID_CONFIG,
                f"config does not fit plugin '{node.plugin}': {error.message}",
            )


# Parameters an llm node may set that a source type's API does not take, so they are not sent:
# Anthropic's Messages API (as of the version its SDK speaks) refuses temperature and top_p.
IGNORED_LLM_PARAMETERS: dict[str, tuple[str, ...]] = {"anthropic": ("temperature", "top_p")}


def check_ignored_parameters(ctx: CheckContext) -> Iterator[Violation]:
    """An llm node sets a parameter its source's API does not take (a warning: the node runs,
    without it)."""
    if ctx.sources is None:
        return
    for entry in ctx.view.nodes:
        if not isinstance(entry.model, LlmNode):
            continue
        source_type = ctx.sources.get(entry.model.source)
        for name in IGNORED_LLM_PARAMETERS.get(source_type or "", ()):
            if getattr(entry.model.config, name) is not None:
                yield Violation(
                    pointer("nodes", entry.index, "config", name),
                    WarningCode.SOURCE_PARAMETER_IGNORED,
                    f"source '{entry.model.source}' is of type {source_type}, whose API does "
                    f"not take `{name}`: it is not sent; remove it, or use another source",
                )
