"""Retry policies for tests: real retries, with backoffs too short to slow a test down."""

from __future__ import annotations

from typing import Any

# A node's `retry`: three attempts, 10-20 ms apart, no jitter.
FAST_RETRY: dict[str, Any] = {
    "max_attempts": 3,
    "backoff": {"initial": 0.01, "max": 0.02, "jitter": False},
}


def fast_retry(max_attempts: int) -> dict[str, Any]:
    """FAST_RETRY with another number of attempts."""
    return {**FAST_RETRY, "max_attempts": max_attempts}
