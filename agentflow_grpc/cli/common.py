"""What every `agentflow` command shares: exit codes and error output."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from datetime import timedelta
from typing import TypeVar

import click
from pydantic import TypeAdapter, ValidationError

from agentflow_grpc.model.errors import AgentFlowError

T = TypeVar("T")

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3


def fail(message: str) -> click.exceptions.Exit:
    """Print one clear line to stderr; raise the result to exit with EXIT_USAGE."""
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(EXIT_USAGE)


def run_coroutine(coroutine: Awaitable[T]) -> T:
    """Run a command's coroutine; an AgentFlowError becomes one clear line and exit code 2."""

    async def main() -> T:
        return await coroutine

    try:
        return asyncio.run(main())
    except AgentFlowError as exc:
        raise fail(exc.message) from None


def format_violation(violation: Mapping[str, str]) -> str:
    path = violation["path"] or "/"
    code = click.style(violation["code"], fg="yellow")
    return f"  {path}  {code}\n      {violation['message']}"


def format_warning(warning: Mapping[str, str]) -> str:
    """A warning line: like a violation, marked `warning`; it never changes the exit code."""
    path = warning["path"] or "/"
    code = click.style(warning["code"], fg="cyan")
    return f"  {click.style('warning', fg='cyan')} {path}  {code}\n      {warning['message']}"


class Duration(click.ParamType[timedelta]):
    """A length of time: `90s`, `15m`, `12h`, `30d`, or ISO 8601 (`P1DT12H`)."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip()
        number, unit = text[:-1], text[-1:].lower()
        try:
            if unit in _UNITS and number and float(number) >= 0:
                return timedelta(**{_UNITS[unit]: float(number)})
        except (ValueError, OverflowError):
            pass
        try:
            parsed = _DURATION.validate_python(text)
        except ValidationError:
            parsed = None
        if parsed is None or parsed < timedelta(0):
            self.fail(
                f"{text!r} is not a duration such as 90s, 15m, 12h, 30d or P1DT12H", param, ctx
            )
        return parsed


_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)
