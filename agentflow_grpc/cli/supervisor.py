"""N server processes on one port: what `agentflow serve --processes N` and `agentflow dev` run.

Each process is `agentflow serve --supervisor PID` (started with subprocess, never forked from this
one): the one-process server, binding the port with SO_REUSEPORT, so the kernel hands each new
connection to one of them. Each has its own workers, its own `/metrics` and its own drain.

- The port: `reserve_port` binds it first without SO_REUSEPORT, which fails if anything else
  holds it (another server, or another supervisor's processes: a second `agentflow serve` on a
  busy port fails, it never joins), then keeps it with a listening SO_REUSEPORT socket until the
  first process serves. Port 0 picks a free one.
- Start: every process at once; each says where it listens on stdout (`grpc://…`, then its
  metrics URL). One that exits before it serves ends the start: an error, nothing left running.
- Metrics: `AGENTFLOW_METRICS_PORT` P > 0 gives process i the port P+i; 0, a free one each;
  -1, none.
- A process that exits while it should serve is started again after 0.5 s; one that exits
  within `MIN_UPTIME` of its start, after 1, 2, 4, 8 s for such exits in a row, and at the
  `MAX_QUICK_EXITS`th (a process that cannot start, say) the supervisor gives up:
  `SupervisorError`.
- Stop: SIGTERM to every process (each drains as `agentflow serve` does), then up to
  `shutdown_grace` + `STOP_MARGIN` seconds for them to exit; SIGKILL for any still running.
  A process whose supervisor dies (SIGKILL) notices and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from agentflow_grpc.config import Settings
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.supervisor")

START_TIMEOUT = 120.0  # seconds a process has to say where it listens
STOP_MARGIN = 15.0  # beyond shutdown_grace: a server's spare for recording, closing its app
MIN_UPTIME = 10.0  # a process that served this long before it exited did not fail at start
MAX_QUICK_EXITS = 5
FIRST_DELAY, MAX_DELAY = 0.5, 8.0


class SupervisorError(RuntimeError):
    """The server processes could not be started, or kept failing."""


@contextlib.contextmanager
def reserve_port(host: str, port: int) -> Iterator[ReservedPort]:
    """`host:port` kept for the server processes (see the module doc); OSError naming the
    address when something else holds it."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # No SO_REUSEPORT: any socket on the port fails this. SO_REUSEADDR, as gRPC's
            # servers have it: connections of an earlier server in TIME_WAIT do not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            chosen = probe.getsockname()[1]
        holder = socket.socket(family, socket.SOCK_STREAM)
        try:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind((address[0], chosen, *address[2:]))
            holder.listen()  # listening, it fails the probe of another supervisor
        except OSError:
            holder.close()
            raise
    except OSError:
        message = f"cannot listen on {host}:{port}: the address is in use or not local"
        raise OSError(message) from None
    reserved = ReservedPort(host, chosen, holder)
    try:
        yield reserved
    finally:
        reserved.release()


@dataclass
class ReservedPort:
    host: str
    port: int
    _holder: socket.socket | None = field(repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def release(self) -> None:
        """Let go of the port (once a server process listens on it, that one keeps it)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.close()


@dataclass
class RestartPolicy:
    """How long to wait before starting again a process that exited; None: give up."""

    min_uptime: float = MIN_UPTIME
    max_quick_exits: int = MAX_QUICK_EXITS
    quick_exits: int = 0

    def after_exit(self, served: float | None) -> float | None:
        """`served`: seconds the process served before it exited (None: it never served)."""
        if served is not None and served >= self.min_uptime:
            self.quick_exits = 0
            return FIRST_DELAY
        self.quick_exits += 1
        if self.quick_exits >= self.max_quick_exits:
            return None
        return float(min(FIRST_DELAY * 2**self.quick_exits, MAX_DELAY))


def exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


@dataclass(eq=False)
class _Slot:
    index: int
    process: asyncio.subprocess.Process | None = None
    metrics_url: str | None = None
    serving_since: float | None = None  # monotonic time it said it listens; None: not yet
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class ServerProcesses:
    """`count` server processes on the `reserved` port; `async with` starts them and waits
    until every one serves, and stops them on exit. `environment` is added to ours (the shared
    database and Redis: cli/backends.py)."""

    def __init__(
        self,
        settings: Settings,
        reserved: ReservedPort,
        *,
        count: int,
        environment: Mapping[str, str],
    ) -> None:
        if settings.metrics_port > 0 and settings.metrics_port + count - 1 > 65535:
            raise SupervisorError(
                f"AGENTFLOW_METRICS_PORT={settings.metrics_port} leaves no room for {count} "
                f"processes (process i serves metrics on {settings.metrics_port}+i)"
            )
        self._settings = settings
        self._reserved = reserved
        self._environment = dict(environment)
        self._slots = [_Slot(index) for index in range(count)]
        self._stopping = False
        self._failure: asyncio.Future[str] | None = None

    @property
    def address(self) -> str:
        return self._reserved.address

    @property
    def metrics_urls(self) -> list[str]:
        """Each process's `/metrics` (as it last started), in order; empty without metrics."""
        return [slot.metrics_url for slot in self._slots if slot.metrics_url is not None]

    async def __aenter__(self) -> ServerProcesses:
        self._failure = asyncio.get_running_loop().create_future()
        starts = [asyncio.create_task(self._first_start(slot)) for slot in self._slots]
        try:
            for started in asyncio.as_completed(starts):
                await started  # the first to fail ends the start
        except BaseException:
            for task in starts:
                task.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
            await self.stop()
            raise
        for slot in self._slots:
            self._track(slot, self._keep(slot))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def run_until(self, stop: asyncio.Event) -> None:
        """Keep the processes serving until `stop` is set; SupervisorError if they keep
        failing."""
        assert self._failure is not None
        stopped = asyncio.ensure_future(stop.wait())
        try:
            waiters: set[asyncio.Future[Any]] = {stopped, self._failure}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if self._failure.done():
            raise SupervisorError(self._failure.result())

    async def stop(self) -> None:
        """SIGTERM to every process, wait for their drain, SIGKILL what is left; idempotent."""
        self._stopping = True
        self._reserved.release()
        for slot in self._slots:
            for task in slot.tasks:
                if not task.get_name().startswith("drain"):  # those end with their process
                    task.cancel()
        running = [s.process for s in self._slots if s.process and s.process.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waits = [asyncio.ensure_future(process.wait()) for process in running]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self._settings.shutdown_grace + STOP_MARGIN)
            for process in running:
                if process.returncode is None:
                    log.warning("server.process_killed", pid=process.pid, reason="no drain")
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*late)
        for slot in self._slots:
            await asyncio.gather(*slot.tasks, return_exceptions=True)

    # --- one process ---

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "agentflow_grpc",
            "serve",
            f"--supervisor={os.getpid()}",
            "--processes=1",
            "--no-migrate",
            f"--host={self._reserved.host}",
            f"--port={self._reserved.port}",
        ]

    def _environment_of(self, slot: _Slot) -> dict[str, str]:
        environment = {**os.environ, **self._environment}
        if self._settings.allow_plaintext:  # `--allow-plaintext` given to the supervisor
            environment["AGENTFLOW_ALLOW_PLAINTEXT"] = "true"
        if self._settings.metrics_port > 0:
            environment["AGENTFLOW_METRICS_PORT"] = str(self._settings.metrics_port + slot.index)
        return environment

    async def _start(self, slot: _Slot) -> str | None:
        """Start the slot's process and wait until it serves: None; else why it did not (it
        exited first, or said nothing in time: then it is killed)."""
        slot.serving_since, slot.metrics_url = None, None
        process = await asyncio.create_subprocess_exec(
            *self._command(),
            env=self._environment_of(slot),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,  # where it listens; its logs go to our stderr
            process_group=0,  # Ctrl-C reaches the supervisor alone, which passes it on
        )
        slot.process = process
        assert process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                listening = await _line(process.stdout, "grpc://")
                metrics = ""
                if listening and self._settings.metrics_port >= 0:
                    metrics = await _line(process.stdout, "http")
        except TimeoutError:
            process.kill()
            listening = ""
        self._track(slot, _drain(process.stdout), name="drain")
        if not listening:
            code = await process.wait()
            return "it said nothing in time" if code == -signal.SIGKILL else exit_reason(code)
        slot.metrics_url = metrics or None
        slot.serving_since = time.monotonic()
        self._reserved.release()  # it listens: the port is kept
        log.info("server.process_serving", process=slot.index + 1, pid=process.pid, metrics=metrics)
        return None

    async def _keep(self, slot: _Slot) -> None:
        """Start the slot's process again whenever it exits, until stopped or given up."""
        while not self._stopping:
            assert slot.process is not None
            code = await slot.process.wait()
            if self._stopping:
                return
            served = None
            if slot.serving_since is not None:
                served = time.monotonic() - slot.serving_since
            delay = slot.policy.after_exit(served)
            log.warning(
                "server.process_exited",
                process=slot.index + 1,
                pid=slot.process.pid,
                reason=exit_reason(code),
                restart_in_s=delay,
            )
            if delay is None:
                assert self._failure is not None
                if not self._failure.done():
                    self._failure.set_result(
                        f"server process {slot.index + 1} exited {slot.policy.quick_exits} "
                        f"times in a row, each within {slot.policy.min_uptime:g} s of its start "
                        f"(last: {exit_reason(code)}); giving up (its log is above)"
                    )
                return
            await asyncio.sleep(delay)
            if not self._stopping and await self._start(slot) is None:
                log.info("server.process_restarted", process=slot.index + 1, pid=slot.process.pid)

    async def _first_start(self, slot: _Slot) -> None:
        failed = await self._start(slot)
        if failed is not None:
            raise SupervisorError(
                f"server process {slot.index + 1} of {len(self._slots)} did not start "
                f"({failed}; its error is above)"
            )

    def _track(self, slot: _Slot, work: Coroutine[Any, Any, None], *, name: str = "keep") -> None:
        task = asyncio.create_task(work, name=f"{name}-{slot.index}")
        slot.tasks.add(task)
        task.add_done_callback(slot.tasks.discard)


async def _line(stream: asyncio.StreamReader, prefix: str) -> str:
    """The first line the process writes that starts with `prefix`; "" if it ends first."""
    while line := (await stream.readline()).decode(errors="replace"):
        if line.startswith(prefix):
            return line.strip()
    return ""


async def _drain(stream: asyncio.StreamReader) -> None:
    """Read what a process writes after its address, so its pipe never fills."""
    while await stream.readline():
        pass
