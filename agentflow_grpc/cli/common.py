"""What every `agentflow` command shares: exit codes and error output."""

from __future__ import annotations

from collections.abc import Mapping

import click

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3


def fail(message: str) -> click.exceptions.Exit:
    """Print one clear line to stderr; raise the result to exit with EXIT_USAGE."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(EXIT_USAGE)


def format_violation(violation: Mapping[str, str]) -> str:
    path = violation["path"] or "/"
    code = click.style(violation["code"], fg="yellow")
    return f"  {path}  {code}\n      {violation['message']}"


def format_warning(warning: Mapping[str, str]) -> str:
    """A warning line: like a violation, marked `warning`; it never changes the exit code."""
    path = warning["path"] or "/"
    code = click.style(warning["code"], fg="cyan")
    return f"  {click.style('warning', fg='cyan')} {path}  {code}\n      {warning['message']}"
