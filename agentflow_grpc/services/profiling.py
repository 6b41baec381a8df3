"""Sampling profiles of this server process, for admins (docs/observability.md, "Server profiles").

`ServerProfiler.profile()` samples the event loop's thread, which runs everything of a server
(the gRPC calls, the runs, their nodes), with pyinstrument for a few seconds, and renders the
samples as pyinstrument's HTML page or as speedscope's JSON. The sampler is installed on the
calling thread only, so it must be called on the event loop's thread (any coroutine is).

- Admins only; `seconds` from 0.1 to 60 (default 5), else InvalidArgumentError on `duration`.
- One profile at a time: a second one while one is being taken is refused with
  ResourceExhaustedError (`profile.in_progress`), whose retry_after is when the first ends.
- A call cancelled while sampling stops the sampler at once.
- The interval grows with the duration (at most about 10,000 samples); a rendered profile larger
  than the server may send is resampled coarser until it fits.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from enum import StrEnum

from pyinstrument import Profiler
from pyinstrument.renderers import HTMLRenderer, SpeedscopeRenderer
from pyinstrument.session import Session

from agentflow_grpc.model.errors import InvalidArgumentError, ResourceExhaustedError
from agentflow_grpc.model.records import Principal
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.profiling")

DEFAULT_SECONDS = 5.0
MIN_SECONDS = 0.1
MAX_SECONDS = 60.0
_FINEST_INTERVAL = 0.001  # seconds between samples
_MOST_SAMPLES = 10_000  # the interval grows with longer profiles to stay about this size
_MOST_BYTES = 8 * 1024 * 1024  # base64 in REST: well within Envoy's 16 MiB response limit
_ENVELOPE_BYTES = 64 * 1024  # the message's other fields, and room to spare
_RESAMPLINGS = 10  # a profile too large is resampled at double the interval up to this often


class ProfileFormat(StrEnum):
    HTML = "html"  # pyinstrument's interactive page
    SPEEDSCOPE = "speedscope"  # https://www.speedscope.app's JSON


CONTENT_TYPES = {ProfileFormat.HTML: "text/html", ProfileFormat.SPEEDSCOPE: "application/json"}


@dataclass(frozen=True, slots=True)
class ServerProfile:
    content_type: str
    content: bytes
    pid: int  # the process sampled
    host: str
    seconds: float  # how long it sampled
    sample_count: int  # samples in the content (after any resampling)


class ServerProfiler:
    def __init__(self, *, max_message_bytes: int = _MOST_BYTES + _ENVELOPE_BYTES) -> None:
        # The largest content it returns: what the server may send, and at most 8 MiB.
        self._max_bytes = max(1024, min(_MOST_BYTES, max_message_bytes - _ENVELOPE_BYTES))
        self._busy_until: float | None = None  # time.monotonic() when the current one ends

    @property
    def busy(self) -> bool:
        """Whether a profile is being taken now."""
        return self._busy_until is not None

    async def profile(
        self,
        principal: Principal,
        seconds: float | None = None,
        profile_format: ProfileFormat = ProfileFormat.HTML,
        *,
        time_limit: float | None = None,
    ) -> ServerProfile:
        """Sample this process for `seconds` (None: 5) and render the samples. `time_limit`:
        the seconds the caller will wait (its deadline), which must leave time to sample."""
        seconds = _checked_seconds(seconds, time_limit)
        now = time.monotonic()
        if self._busy_until is not None:
            wait = max(0.1, self._busy_until - now)
            raise ResourceExhaustedError(
                f"a profile of this server is being taken; try again in {wait:.1f} s",
                retry_after=wait,
                code="profile.in_progress",
            )
        self._busy_until = now + seconds
        try:
            session = await _sample(seconds)
        finally:
            self._busy_until = None
        content, sample_count = await asyncio.to_thread(
            _render, session, profile_format, self._max_bytes
        )
        log.info(
            "server.profiled",
            actor=principal.actor,
            seconds=round(session.duration, 3),
            samples=sample_count,
            format=profile_format.value,
            bytes=len(content),
        )
        return ServerProfile(
            content_type=CONTENT_TYPES[profile_format],
            content=content,
            pid=os.getpid(),
            host=socket.gethostname(),
            seconds=session.duration,
            sample_count=sample_count,
        )


def _checked_seconds(seconds: float | None, time_limit: float | None) -> float:
    if seconds is None:
        seconds = DEFAULT_SECONDS
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:  # NaN fails this too
        raise InvalidArgumentError(
            f"duration must be from {MIN_SECONDS} to {MAX_SECONDS:.0f} seconds, got {seconds:g}",
            field="duration",
        )
    if time_limit is not None and time_limit < seconds:
        raise InvalidArgumentError(
            f"the call's deadline is {time_limit:.1f} s away, before a {seconds:g} s profile "
            "could end: give the call a later deadline, or a shorter duration",
            field="duration",
        )
    return seconds


async def _sample(seconds: float) -> Session:
    """The event loop's thread sampled for `seconds`; stopped at once if cancelled."""
    interval = max(_FINEST_INTERVAL, seconds / _MOST_SAMPLES)
    profiler = Profiler(interval=interval, async_mode="disabled")
    profiler.start(target_description=f"AgentFlow server, pid {os.getpid()}")
    try:
        await asyncio.sleep(seconds)
    finally:
        session = profiler.stop()
    return session


def _render(session: Session, profile_format: ProfileFormat, max_bytes: int) -> tuple[bytes, int]:
    """The session rendered, resampled coarser while it is larger than `max_bytes`."""
    interval = session.min_interval
    current = session
    for _ in range(_RESAMPLINGS):
        content = _rendered(current, profile_format)
        if len(content) <= max_bytes:
            return content, current.sample_count
        interval *= 2
        current = session.resample(interval)
    raise InvalidArgumentError(
        f"the profile is too large to send ({len(content)} bytes, at most {max_bytes}): "
        "take a shorter one",
        field="duration",
    )


def _rendered(session: Session, profile_format: ProfileFormat) -> bytes:
    if profile_format is ProfileFormat.HTML:
        return str(HTMLRenderer().render(session)).encode()
    # Speedscope's timeline keeps every call apart, so pyinstrument's default filter (calls
    # under 1% of the time) would drop nearly all of a server's many short calls.
    renderer = SpeedscopeRenderer(processor_options={"filter_threshold": 0})
    return str(renderer.render(session)).encode()
