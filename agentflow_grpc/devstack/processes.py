"""Stopping a process this project started in an earlier life (its owner died, the process
did not): by pid, only when it is the program we think, politely first."""

from __future__ import annotations

import psutil

from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.devstack")


def live_process(pid: int, *, name_has: str = "", cmdline_has: str = "") -> psutil.Process | None:
    """The running (not zombie) process `pid`, if its name holds `name_has` and its command
    line has the argument `cmdline_has`; else None (gone, or its pid reused by another)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if name_has and name_has not in process.name():
            return None
        if cmdline_has and cmdline_has not in process.cmdline():
            return None
    except psutil.Error:
        return None
    return process


def stop_leftover(process: psutil.Process, what: str, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    log.warning("devstack.leftover_stopped", what=what, pid=process.pid)
    try:
        process.terminate()
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
    except psutil.NoSuchProcess:
        pass
