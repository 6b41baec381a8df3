"""The stats window (model/stats.py): buckets of window / count, rounded up to whole
microseconds, aligned on the epoch, the last one holding now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentflow_grpc.model.stats import RunTotals, StatsWindow

NOW = datetime(2026, 12, 4, 18, 23, 19, 123456, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("window", "count", "width"),
    [
        (timedelta(hours=1), 60, timedelta(minutes=1)),
        (timedelta(minutes=15), 30, timedelta(seconds=30)),
        (timedelta(days=1), 96, timedelta(minutes=15)),
        (timedelta(days=7), 240, timedelta(minutes=42)),
        (timedelta(hours=1), 7, timedelta(microseconds=514_285_715)),  # rounded up
        (timedelta(microseconds=3), 60, timedelta(microseconds=1)),  # at least 1 µs
    ],
)
def test_buckets_are_aligned_and_the_last_holds_now(
    window: timedelta, count: int, width: timedelta
) -> None:
    span = StatsWindow.covering(NOW, window, count)
    assert span.width == width
    assert span.bucket_count == count
    assert span.end - span.start == count * width
    assert (span.start - datetime(1970, 1, 1, tzinfo=UTC)) % width == timedelta(0)
    last = span.bucket_start(count - 1)
    assert last <= NOW < last + width == span.end
    assert (count - 1) * width <= NOW - span.start < count * width
    assert span.end - span.start >= window


def test_the_error_rate_is_failed_over_finished_runs() -> None:
    assert RunTotals().error_rate == 0
    assert RunTotals(total=3, active=3).error_rate == 0
    assert RunTotals(total=5, completed=2, failed=1, cancelled=1, active=1).error_rate == 0.25


def test_a_moment_on_a_bucket_boundary_starts_the_last_bucket() -> None:
    on_the_minute = datetime(2026, 12, 4, 18, 24, tzinfo=UTC)
    span = StatsWindow.covering(on_the_minute, timedelta(hours=1), 60)
    assert span.bucket_start(59) == on_the_minute
    assert span.start == on_the_minute - timedelta(minutes=59)
    # A moment later falls in the same buckets: they do not move between calls.
    assert StatsWindow.covering(on_the_minute + timedelta(seconds=59), HOUR, 60) == span
