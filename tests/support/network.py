"""Ports for tests: picked at run time, never fixed."""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback port nothing listens on (just bound and released, so refused when dialled)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
