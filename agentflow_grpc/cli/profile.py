"""`agentflow profile`: a sampling profile of a running server, written to a file.

It calls ObservabilityService.ProfileServer (admins) on the server that `cli/remote.py` finds,
waits while the server samples itself for `--seconds`, and writes what comes back: pyinstrument's
HTML page, or speedscope's JSON (https://www.speedscope.app). It prints the file, the process
sampled and how many samples it holds. Exit codes: 0 written; 2 refused, unreachable, bad
arguments or the file cannot be written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from agentflow_grpc.cli.common import fail
from agentflow_grpc.cli.remote import api_key, server_address
from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import AgentFlowError

_SUFFIXES = {"html": ".html", "speedscope": ".speedscope.json"}
_SPARE_SECONDS = 60.0  # beyond the sampling: rendering and sending the profile
_MAX_RECEIVE = 64 * 1024 * 1024


@click.command()
@click.option(
    "--seconds",
    type=click.FloatRange(0.1, 60.0),  # the server's own limits (services/profiling.py)
    default=5.0,
    show_default=True,
    help="How long the server samples itself (0.1 to 60).",
)
@click.option(
    "--format",
    "profile_format",
    type=click.Choice(sorted(_SUFFIXES)),
    default="html",
    show_default=True,
    help="pyinstrument's HTML page, or speedscope's JSON.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (default: agentflow-profile-<time>.html or .speedscope.json here).",
)
@click.option(
    "--address",
    metavar="HOST:PORT",
    help="The gRPC server (default: the running `agentflow dev`, else AGENTFLOW_GRPC_HOST:PORT).",
)
@click.pass_obj
def profile(
    settings: Settings,
    seconds: float,
    profile_format: str,
    output: Path | None,
    address: str | None,
) -> None:
    """Take a sampling profile of a running server (admins; the key from AGENTFLOW_API_KEY)."""
    try:
        target = server_address(settings, address)
        key = api_key(settings)
    except AgentFlowError as exc:
        raise fail(exc.message) from None
    path = output or Path(f"agentflow-profile-{time.strftime('%Y%m%d-%H%M%S')}")
    if output is None:
        path = path.with_name(path.name + _SUFFIXES[profile_format])
    click.echo(f"Sampling {target} for {seconds:g} s …", err=True)
    result = _call(target, key, seconds, profile_format)
    try:
        path.write_bytes(result.content)
    except OSError as exc:
        raise fail(f"{path}: cannot write: {exc.strerror or exc}") from None
    sampled = result.duration.seconds + result.duration.nanos / 1e9
    click.echo(
        f"Wrote {path}: {result.sample_count} samples over {sampled:.2f} s of pid {result.pid} "
        f"on {result.host} ({result.content_type}, {len(result.content):,} bytes)"
    )


def _call(target: str, key: str, seconds: float, profile_format: str) -> Any:
    import grpc
    from google.protobuf import duration_pb2

    from agentflow_grpc._gen.agentflow.v1 import observability_pb2, observability_pb2_grpc

    formats = {
        "html": observability_pb2.ProfileServerRequest.FORMAT_HTML,
        "speedscope": observability_pb2.ProfileServerRequest.FORMAT_SPEEDSCOPE,
    }
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    request = observability_pb2.ProfileServerRequest(
        duration=duration, format=formats[profile_format]
    )
    options = [("grpc.max_receive_message_length", _MAX_RECEIVE)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = observability_pb2_grpc.ObservabilityServiceStub(channel)
        try:
            return stub.ProfileServer(
                request,
                metadata=(("x-api-key", key),),
                timeout=seconds + _SPARE_SECONDS,
            )
        except grpc.RpcError as error:
            code = error.code()
            details = error.details()
            if code is grpc.StatusCode.UNAVAILABLE:
                raise fail(f"cannot reach the server at {target}: {details}") from None
            raise fail(f"{code.name}: {details}") from None
