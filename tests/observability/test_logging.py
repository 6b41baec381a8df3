"""Logging is configured in one place; our events and stdlib records come out the same way."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from agentflow_grpc.observability import spans
from agentflow_grpc.observability.logging import (
    bind_context,
    bound_context,
    clear_context,
    configure_logging,
    get_logger,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_json_events_carry_level_timestamp_and_fields() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    get_logger("test").info("spec.validated", file="a.json", violations=2)
    event = json.loads(stream.getvalue())
    assert event["event"] == "spec.validated"
    assert event["level"] == "info"
    assert event["file"] == "a.json"
    assert event["violations"] == 2
    assert event["timestamp"].endswith("Z")


class _Writes(io.StringIO):
    """A stream that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_each_line_is_one_write_so_processes_sharing_a_file_never_join_lines() -> None:
    stream = _Writes()
    configure_logging("INFO", "json", stream=stream)
    get_logger("test").info("webhooks.started", concurrency=8)
    logging.getLogger("library").warning("from the standard library")
    assert len(stream.calls) == 2
    assert all(call.endswith("\n") and call.count("\n") == 1 for call in stream.calls)
    assert [json.loads(call)["event"] for call in stream.calls] == [
        "webhooks.started",
        "from the standard library",
    ]


def test_level_filters_events() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "json", stream=stream)
    get_logger("test").info("quiet")
    get_logger("test").warning("loud")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_context_variables_are_merged() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    with structlog.contextvars.bound_contextvars(request_id="r-1"):
        get_logger("test").info("handled")
    assert json.loads(stream.getvalue())["request_id"] == "r-1"


def test_stdlib_records_are_rendered_as_json_too() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("some.library").warning("disk %s", "full")
    event = json.loads(stream.getvalue())
    assert event["event"] == "disk full"
    assert event["level"] == "warning"
    assert event["logger"] == "some.library"


def test_exceptions_are_structured_not_multiline() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("test").exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["exception"][0]["exc_type"] == "RuntimeError"
    assert event["exception"][0]["exc_value"] == "boom"


def test_console_format_is_human_readable() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "console", stream=stream)
    get_logger("test").info("started", port=1234)
    output = stream.getvalue()
    assert "started" in output
    assert "port=1234" in output
    assert not output.startswith("{")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "auto", stream=stream)
    get_logger("test").info("piped")
    assert json.loads(stream.getvalue())["event"] == "piped"


@pytest.mark.parametrize(
    ("level", "shown"), [("INFO", ["retrying"]), ("DEBUG", ["request", "retrying"])]
)
def test_http_client_request_lines_are_kept_for_debug(level: str, shown: list[str]) -> None:
    stream = io.StringIO()
    configure_logging(level, "json", stream=stream)
    logging.getLogger("httpx2").info("request")
    logging.getLogger("openai").warning("retrying")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == shown


def test_lines_written_in_a_span_carry_its_trace_and_span_ids() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    provider = TracerProvider(shutdown_on_exit=False)  # records nothing: the ids are still made
    installed = spans.install(provider)
    try:
        get_logger("test").info("outside")
        with spans.span("call"):
            ids = spans.current_ids()
            get_logger("test").info("inside")
            logging.getLogger("some.library").warning("inside too")
    finally:
        installed.uninstall()
        provider.shutdown()
    outside, inside, library = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    assert ids is not None
    assert (inside["trace_id"], inside["span_id"]) == ids
    assert (library["trace_id"], library["span_id"]) == ids


def test_bound_context_is_on_every_line_until_it_is_cleared() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    bind_context(request_id="r-9", tenant_id="t-1")
    with bound_context(execution_id="e-1"):
        get_logger("test").info("running")
    get_logger("test").info("ran")
    clear_context()
    get_logger("test").info("later")
    running, ran, later = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (running["request_id"], running["tenant_id"], running["execution_id"]) == (
        "r-9",
        "t-1",
        "e-1",
    )
    assert "execution_id" not in ran
    assert ran["request_id"] == "r-9"
    assert "request_id" not in later
