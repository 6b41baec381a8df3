"""The stats dashboard's numbers for one tenant over a window (ObservabilityService.GetStats,
docs/observability.md): what storage counts (`WindowCounts`), and what the service adds to it
(prices, the queue, dependencies, error groups) in `Stats`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agentflow_grpc.model.error_groups import ErrorGroup
from agentflow_grpc.model.health import DependencyHealth

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class StatsWindow:
    """[start, start + bucket_count * width): buckets of `width` aligned on the Unix epoch, the
    last one holding the moment the stats were read."""

    start: datetime
    width: timedelta
    bucket_count: int

    @classmethod
    def covering(cls, now: datetime, window: timedelta, bucket_count: int) -> StatsWindow:
        """`bucket_count` buckets of `window / bucket_count` (rounded up to whole
        microseconds, at least one), aligned on the epoch, the last one holding `now`: so the
        buckets stay put from one call to the next, and the first one starts between
        `window - width` and `window` before `now`."""
        width_us = max(1, -(-(window // _MICROSECOND) // bucket_count))
        now_us = (now - _EPOCH) // _MICROSECOND
        start_us = now_us - now_us % width_us - (bucket_count - 1) * width_us
        return cls(_EPOCH + start_us * _MICROSECOND, width_us * _MICROSECOND, bucket_count)

    @property
    def end(self) -> datetime:
        return self.start + self.width * self.bucket_count

    def bucket_start(self, index: int) -> datetime:
        return self.start + self.width * index


@dataclass(frozen=True, slots=True)
class StatsBucket:
    """Runs created in [start, start + width), by their state now."""

    start: datetime
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    active: int = 0  # pending or running


@dataclass(frozen=True, slots=True)
class RunTotals:
    """Runs created in the window, by their state now; duration percentiles (ms) over the
    finished ones that have a duration (None when there is none)."""

    total: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    active: int = 0
    p50_duration_ms: float | None = None
    p95_duration_ms: float | None = None
    p99_duration_ms: float | None = None

    @property
    def error_rate(self) -> float:
        """failed / finished; 0 with no finished run."""
        finished = self.completed + self.failed + self.cancelled
        return self.failed / finished if finished else 0.0


@dataclass(frozen=True, slots=True)
class ModelTokens:
    """One provider's model over the window's runs (their `model_usage`, summed)."""

    provider: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_read_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it


@dataclass(frozen=True, slots=True)
class FailedRun:
    execution_id: uuid.UUID
    workflow_id: uuid.UUID | None  # None for an inline spec
    error_code: str
    error_message: str
    created_at: datetime
    duration_ms: float | None


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """What storage counts over a window (storage/stats.py)."""

    window: StatsWindow
    buckets: tuple[StatsBucket, ...]  # oldest first, every bucket present
    totals: RunTotals
    models: tuple[ModelTokens, ...]  # most tokens first
    recent_failures: tuple[FailedRun, ...]  # newest first


@dataclass(frozen=True, slots=True)
class PricedModel:
    tokens: ModelTokens
    estimated_cost_usd: float  # 0 when the price is not known
    price_known: bool


@dataclass(frozen=True, slots=True)
class Stats:
    counts: WindowCounts
    models: tuple[PricedModel, ...]  # counts.models, priced, in the same order
    queue_depth: int  # background runs waiting for a worker (all tenants); -1: Redis cannot say
    dependencies: tuple[DependencyHealth, ...]
    top_error_groups: tuple[ErrorGroup, ...]

    @property
    def estimated_cost_usd(self) -> float:
        return sum(model.estimated_cost_usd for model in self.models if model.price_known)
