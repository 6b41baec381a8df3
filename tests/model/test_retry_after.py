"""`retry_after_seconds`: a `Retry-After` header (RFC 9110 §10.2.3) as the seconds to wait."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentflow_grpc.model.failures import for_http_status, retry_after_seconds

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),  # not RFC delay-seconds, but some servers send it; meant as seconds
        ("Sat, 05 Dec 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Saturday, 05-Dec-26 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Sat Dec  5 12:00:10 2026", 10.0),  # obsolete asctime form
        ("Sat, 05 Dec 2026 11:59:00 GMT", 0.0),  # a date already past: no wait
        ("-5", 0.0),
    ],
)
def test_delay_seconds_and_http_dates_become_seconds(header: str, seconds: float) -> None:
    assert retry_after_seconds(header, NOW) == seconds


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "Sat, 99 Foo 2026"])
def test_an_absent_or_unreadable_header_says_nothing(header: str | None) -> None:
    assert retry_after_seconds(header, NOW) is None


def test_only_rate_limits_and_unavailable_servers_carry_the_wait() -> None:
    assert for_http_status("provider", 429, "slow down", retry_after=3).retry_after == 3
    assert for_http_status("provider", 503, "busy", retry_after=3).retry_after == 3
    assert for_http_status("provider", 500, "broken", retry_after=3).retry_after is None
    assert for_http_status("provider", 400, "bad", retry_after=3).retry_after is None
