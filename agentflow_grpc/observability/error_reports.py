"""Error reports: the one way the code reports an unexpected exception to an error tracker.

Every layer calls `report(exc, **tags)` where it catches what it did not expect (the API's
interceptor for a call's INTERNAL, the engine for a crashed run, a node attempt that crashed).
Which tracker hears it is decided once by the composition root: `observability.error_reporting`
installs Sentry here when `SENTRY_DSN` is set. Until then, and in code that never sets it up,
a report costs a call and nothing more. A report never raises, and never waits on the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.error_reports")

# Sends one exception with its tags (already strings) to the tracker; must not block.
Reporter = Callable[[BaseException, Mapping[str, str]], None]

_current: Reporter | None = None


class Installed:
    """What `install` returns: `uninstall()` puts back what was there before."""

    def __init__(self, installed: Reporter, previous: Reporter | None) -> None:
        self._installed = installed
        self._previous = previous

    def uninstall(self) -> None:
        global _current
        if _current is self._installed:  # a later install that is still in place stays
            _current = self._previous


def install(reporter: Reporter) -> Installed:
    """Make `reporter` the one reports go to (observability.error_reporting calls this)."""
    global _current
    previous = _current
    _current = reporter
    return Installed(reporter, previous)


def enabled() -> bool:
    """Whether reports go anywhere."""
    return _current is not None


def report(exc: BaseException, **tags: object) -> None:
    """Report `exc` with `tags` (e.g. `method=…`, `execution_id=…`; None values left out).
    Tags name where it happened: never put a request's content or a secret in one."""
    reporter = _current
    if reporter is None:
        return
    try:
        reporter(exc, {name: str(value) for name, value in tags.items() if value is not None})
    except Exception:  # the tracker's trouble must not become the caller's
        log.warning("error_report.failed", exc_info=True)
