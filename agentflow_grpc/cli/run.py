"""`agentflow run`: run a workflow locally, with live progress or one JSON event per line."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentflow_grpc.cli.common import EXIT_INVALID, EXIT_RUN_FAILED, fail, format_violation
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import AgentFlowError
from agentflow_grpc.spec import WorkflowSpec, load_document, validate_spec

if TYPE_CHECKING:  # imported lazily at run time: `agentflow validate` need not load LangGraph
    from agentflow_grpc.engine.execution import Execution
    from agentflow_grpc.sources.registry import SourceSet


@click.command()
@click.argument("spec_file", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "-i",
    "input_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A run input; VALUE is JSON unless the input is a string. Repeatable.",
)
@click.option(
    "--inputs-file",
    type=click.Path(path_type=Path),
    help="A JSON object of inputs (--input values override it).",
)
@click.option(
    "--sources",
    "sources_file",
    type=click.Path(path_type=Path),
    help='JSON list of sources: [{"name", "type", "config", "secrets"}]; a secret may be '
    '{"env": "VARIABLE"}.',
)
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds for the run.")
@click.pass_obj
def run(
    settings: Settings,
    spec_file: Path,
    input_pairs: tuple[str, ...],
    inputs_file: Path | None,
    sources_file: Path | None,
    as_json: bool,
    timeout: float | None,
) -> None:
    """Run the workflow in SPEC_FILE and show each node's progress as it happens."""
    # Imported here so that `agentflow validate` does not pay for LangGraph and the SDKs.
    from agentflow_grpc.engine.execution import ExecutionEngine
    from agentflow_grpc.model.errors import InvalidInputsError
    from agentflow_grpc.nodes.registry import NodeRegistry
    from agentflow_grpc.observability.metrics import Metrics
    from agentflow_grpc.sources.loading import load_source_definitions
    from agentflow_grpc.sources.registry import SourceRegistry, SourceSet

    metrics = Metrics()  # recorded as by a server, never served: a local run has no /metrics
    try:
        document = load_document(spec_file)
        definitions = load_source_definitions(sources_file) if sources_file else []
        registry = NodeRegistry.from_entry_points()
        sources = SourceSet(
            definitions,
            SourceRegistry.default(
                metrics=metrics, azure_server_identity=settings.azure_server_identity
            ),
        )
        sources.check()
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    result = validate_spec(
        document,
        sources=sources.types_by_name(),
        plugins=registry.catalog,
        limits=settings.spec_limits(),
    )
    if result.spec is None or not result.ok:
        click.echo(f"{spec_file}: the spec is not valid", err=True)
        for violation in result.violations:
            click.echo(format_violation(violation.to_dict()), err=True)
        raise click.exceptions.Exit(EXIT_INVALID)
    spec = result.spec
    inputs = _inputs(spec, input_pairs, inputs_file)
    engine = ExecutionEngine(
        metrics=metrics,
        registry=registry,
        cache_size=settings.compiled_cache_size,
        node_timeout=settings.node_timeout,
        execution_timeout=settings.execution_timeout,
    )
    try:
        execution = engine.start(spec, inputs, sources=sources, timeout=timeout)
    except InvalidInputsError as exc:
        click.echo(f"{spec_file}: invalid inputs", err=True)
        for problem in exc.violations:
            click.echo(format_violation(problem.to_dict()), err=True)
        raise click.exceptions.Exit(EXIT_INVALID) from None
    status = asyncio.run(_drive(execution, spec, sources, as_json))
    if status != "completed":
        raise click.exceptions.Exit(EXIT_RUN_FAILED)


async def _drive(
    execution: Execution, spec: WorkflowSpec, sources: SourceSet, as_json: bool
) -> str:
    from rich.console import Console

    from agentflow_grpc.cli.progress import RunProgress, summary

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, execution.cancel, f"interrupted ({signum.name})")
    status = "failed"
    try:
        if as_json:
            async for event in execution.events():
                click.echo(json.dumps(event.to_dict(), ensure_ascii=False, default=str))
                if event.is_terminal:
                    status = event.type.value.removeprefix("execution_")
            return status
        console = Console()
        with RunProgress(spec, console) as progress:
            async for event in execution.events():
                progress.update(event)
                if event.is_terminal:
                    status = event.type.value.removeprefix("execution_")
                    final = summary(event)
        console.print_json(json.dumps(final, ensure_ascii=False, default=str))
        return status
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await sources.aclose()


def _inputs(spec: WorkflowSpec, pairs: tuple[str, ...], inputs_file: Path | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            document = load_document(inputs_file)
        except AgentFlowError as exc:
            raise fail(exc.message) from None
        if not isinstance(document, dict):
            raise fail(f"{inputs_file}: expected a JSON object of inputs")
        inputs.update(document)
    for pair in pairs:
        name, separator, text = pair.partition("=")
        if not separator or not name:
            raise fail(f"--input {pair!r}: expected NAME=VALUE")
        declared = spec.inputs.get(name)
        if declared is None or declared.type == "string":
            inputs[name] = text  # unknown names are reported with the other input problems
            continue
        try:
            inputs[name] = json.loads(text)
        except json.JSONDecodeError:
            raise fail(
                f"--input {name}: {text!r} is not JSON, and the input is a {declared.type}"
            ) from None
    return inputs
