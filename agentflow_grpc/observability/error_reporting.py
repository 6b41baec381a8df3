"""Sentry, set up once by the composition root (`app.open_app`) when `SENTRY_DSN` is set.

The DSN comes from the settings (`SENTRY_DSN`); sentry-sdk reads the other variables itself:
`SENTRY_ENVIRONMENT` (default `production`), `SENTRY_RELEASE` (default here
`agentflow@<version>`). Once set up, every
`observability.error_reports.report(exc, **tags)` becomes a Sentry event: the exception, its
stack (source lines, never local variables) and the tags. Nothing else goes: no integrations
(so no breadcrumbs of logs, HTTP calls or SQL, and nothing patched), no request, no user, no
performance data; `send_default_pii` stays off (its default: sentry-sdk 2.7x deprecates the
option itself), so sentry-sdk's own scrubber also drops keys such as `authorization`. Events
are sent from sentry-sdk's own thread; a full queue drops them, it never holds a call up.
Without `SENTRY_DSN` nothing is set up and reports go nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import sentry_sdk
from sentry_sdk.integrations.dedupe import DedupeIntegration
from sentry_sdk.types import Event, Hint

from agentflow_grpc import __version__
from agentflow_grpc.observability import error_reports
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.error_reporting")

FLUSH_TIMEOUT = 2.0  # seconds for the events still queued when the app closes
_DROPPED = ("request", "user", "breadcrumbs", "extra")


@dataclass
class ErrorReporting:
    """Sentry's client of one app, or None when `SENTRY_DSN` is not set."""

    client: sentry_sdk.Client | None
    _installed: error_reports.Installed | None

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def close(self) -> None:
        """Send what is queued (up to FLUSH_TIMEOUT) and stop (blocking: off the event loop)."""
        if self._installed is not None:
            self._installed.uninstall()
        if self.client is not None:
            self.client.close(timeout=FLUSH_TIMEOUT)
            if sentry_sdk.get_client() is self.client:
                sentry_sdk.get_global_scope().set_client(None)


def configure_error_reporting(
    dsn: str | None, *, environ: Mapping[str, str] | None = None
) -> ErrorReporting:
    """Sentry when `dsn` (SENTRY_DSN) is given (the module doc), installed for error_reports."""
    environ = os.environ if environ is None else environ
    dsn = (dsn or "").strip()
    if not dsn:
        return ErrorReporting(None, None)
    sentry_sdk.init(
        dsn=dsn,
        release=environ.get("SENTRY_RELEASE") or f"agentflow@{__version__}",
        environment=environ.get("SENTRY_ENVIRONMENT") or None,
        include_local_variables=False,
        max_request_body_size="never",
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[DedupeIntegration()],
        max_breadcrumbs=0,
        traces_sample_rate=None,
        before_send=_without_context,
    )
    client = sentry_sdk.get_client()
    assert isinstance(client, sentry_sdk.Client)
    log.info("error_reporting.sentry", endpoint=_shown(dsn))
    return ErrorReporting(client, error_reports.install(_capture))


def _capture(exc: BaseException, tags: Mapping[str, str]) -> None:
    with sentry_sdk.new_scope() as scope:
        for name, value in tags.items():
            scope.set_tag(name, value)
        scope.capture_exception(exc)


def _without_context(event: Event, hint: Hint) -> Event:
    """Whatever an event picked up besides the exception and our tags goes."""
    fields = cast(dict[str, Any], event)
    for key in _DROPPED:
        fields.pop(key, None)
    for value in (event.get("exception") or {}).get("values") or ():
        for frame in (value.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    return event


def _shown(dsn: str) -> str:
    """A DSN for the log: its host and project, not its key."""
    return dsn.rpartition("@")[2]
