"""The `agentflow` command.

Exit codes: 0 success; 1 a spec (or a run's inputs) is invalid; 2 bad usage, unreadable or
non-JSON input, or bad configuration; 3 a run failed or was cancelled. Errors are one clear line
on stderr, never a traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from agentflow_grpc import __version__
from agentflow_grpc.cli.apikeys import REMOTE_COMMANDS as APIKEY_COMMANDS
from agentflow_grpc.cli.audit import audit
from agentflow_grpc.cli.common import (
    EXIT_INVALID,
    EXIT_USAGE,
    fail,
    format_violation,
    format_warning,
)
from agentflow_grpc.cli.dev import dev, gateway_config_command
from agentflow_grpc.cli.profile import profile
from agentflow_grpc.cli.run import run
from agentflow_grpc.cli.serve import serve
from agentflow_grpc.cli.storage import COMMANDS as STORAGE_COMMANDS
from agentflow_grpc.cli.storage import apikey
from agentflow_grpc.config import Settings, load_settings
from agentflow_grpc.model.errors import AgentFlowError, SpecReadError
from agentflow_grpc.observability.logging import configure_logging, get_logger
from agentflow_grpc.sources.loading import load_source_definitions
from agentflow_grpc.spec import PluginCatalog, load_document, validate_spec
from agentflow_grpc.spec.schema import workflow_json_schema_text

log = get_logger("agentflow.cli")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agentflow")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """AgentFlow: define LLM workflows as JSON, validate them, and run them."""
    try:
        settings = load_settings()
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@cli.command()
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
def schema(output: Path | None) -> None:
    """Print the JSON Schema of a WorkflowSpec (generated from the models)."""
    text = workflow_json_schema_text()
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"{output}: cannot write: {exc.strerror or exc}") from None


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON report on stdout, for machines.")
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(path_type=Path),
    help='JSON list of the sources that exist: [{"name": …, "type": …}, …].',
)
@click.pass_obj
def validate(
    settings: Settings, files: tuple[Path, ...], as_json: bool, sources_file: Path | None
) -> None:
    """Validate workflow spec FILES; report every violation with its JSON path and code."""
    try:
        sources = _read_sources(sources_file) if sources_file is not None else None
        plugins = PluginCatalog.from_entry_points()
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    limits = settings.spec_limits()
    reports: list[dict[str, Any]] = []
    for path in files:
        started = time.perf_counter()
        try:
            document = load_document(path)
        except SpecReadError as exc:
            reports.append({"file": str(path), "valid": False, "error": _error(exc)})
            log.debug("spec.unreadable", file=str(path), reason=exc.message)
            continue
        result = validate_spec(document, sources=sources, plugins=plugins, limits=limits)
        report = {
            "file": str(path),
            "valid": result.ok,
            "violations": [v.to_dict() for v in result.violations],
            "warnings": [w.to_dict() for w in result.warnings],
        }
        if result.spec is not None:
            report["summary"] = {"nodes": len(result.spec.nodes), "edges": len(result.spec.edges)}
        reports.append(report)
        log.debug(
            "spec.validated",
            file=str(path),
            valid=result.ok,
            violations=len(result.violations),
            warnings=len(result.warnings),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    unreadable = any("error" in report for report in reports)
    valid = all(report["valid"] for report in reports)
    if as_json:
        click.echo(json.dumps({"valid": valid, "files": reports}, indent=2))
    else:
        _print_reports(reports)
    if unreadable:
        raise click.exceptions.Exit(EXIT_USAGE)
    if not valid:
        raise click.exceptions.Exit(EXIT_INVALID)


def _error(exc: AgentFlowError) -> dict[str, str]:
    return {"code": exc.code, "message": exc.message}


def _read_sources(path: Path) -> dict[str, str]:
    return {
        definition.name: definition.type
        for definition in load_source_definitions(path, resolve_secrets=False)
    }


def _print_reports(reports: list[dict[str, Any]]) -> None:
    for report in reports:
        name = click.style(report["file"], bold=True)
        if "error" in report:
            click.echo(click.style(report["error"]["message"], fg="red"))
        elif report["valid"]:
            summary = report["summary"]
            counts = f"{summary['nodes']} nodes, {summary['edges']} edges"
            warned = len(report["warnings"])
            noted = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
            click.echo(f"{name}: {click.style('valid', fg='green')} ({counts}){noted}")
        else:
            count = len(report["violations"])
            noun = "violation" if count == 1 else "violations"
            click.echo(f"{name}: {click.style(f'{count} {noun}', fg='red')}")
            for violation in report["violations"]:
                click.echo(format_violation(violation))
        for warning in report.get("warnings", ()):
            click.echo(format_warning(warning))
    if len(reports) > 1:
        valid = sum(1 for report in reports if report["valid"])
        click.echo(f"{len(reports)} files: {valid} valid, {len(reports) - valid} not valid")


cli.add_command(run)
cli.add_command(serve)
cli.add_command(dev)
cli.add_command(gateway_config_command)
cli.add_command(profile)
cli.add_command(audit)
for command in STORAGE_COMMANDS:
    cli.add_command(command)
for command in APIKEY_COMMANDS:  # beside `apikey create`, on a running server's AdminService
    apikey.add_command(command)


def main() -> None:
    cli(prog_name="agentflow")
