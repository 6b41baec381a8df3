"""The stats dashboard's numbers ↔ protobuf messages (ObservabilityService.GetStats)."""

from __future__ import annotations

from datetime import timedelta

from google.protobuf import duration_pb2

from agentflow_grpc._gen.agentflow.v1 import observability_pb2
from agentflow_grpc.api.convert import name_of, timestamp
from agentflow_grpc.api.convert_errors import error_group_to_proto
from agentflow_grpc.api.convert_health import dependency_to_proto
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.model.stats import FailedRun, PricedModel, Stats, StatsBucket

_NANOS = 1_000_000_000


def window_of(request: observability_pb2.GetStatsRequest) -> timedelta | None:
    """The request's `window`; None when unset. A Duration that is not one (seconds and nanos
    of different signs, nanos past a second) or cannot be a timedelta: InvalidArgumentError."""
    if not request.HasField("window"):
        return None
    seconds, nanos = request.window.seconds, request.window.nanos
    if abs(nanos) >= _NANOS or (seconds < 0 < nanos) or (nanos < 0 < seconds):
        raise InvalidArgumentError("window is not a valid Duration", field="window")
    try:
        return timedelta(microseconds=(seconds * _NANOS + nanos) // 1000)
    except OverflowError:
        raise InvalidArgumentError("window is out of range", field="window") from None


def duration(value: timedelta) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromTimedelta(value)
    return message


def stats_to_proto(stats: Stats) -> observability_pb2.Stats:
    counts = stats.counts
    totals = counts.totals
    return observability_pb2.Stats(
        start_time=timestamp(counts.window.start),
        end_time=timestamp(counts.window.end),
        bucket_width=duration(counts.window.width),
        buckets=[bucket_to_proto(bucket) for bucket in counts.buckets],
        total_executions=totals.total,
        completed_executions=totals.completed,
        failed_executions=totals.failed,
        cancelled_executions=totals.cancelled,
        active_executions=totals.active,
        error_rate=totals.error_rate,
        p50_duration_ms=totals.p50_duration_ms or 0.0,
        p95_duration_ms=totals.p95_duration_ms or 0.0,
        p99_duration_ms=totals.p99_duration_ms or 0.0,
        models=[model_to_proto(model) for model in stats.models],
        estimated_cost_usd=stats.estimated_cost_usd,
        queue_depth=stats.queue_depth,
        dependencies=[dependency_to_proto(d) for d in stats.dependencies],
        top_error_groups=[error_group_to_proto(group) for group in stats.top_error_groups],
        recent_failures=[failure_to_proto(run) for run in counts.recent_failures],
    )


def bucket_to_proto(bucket: StatsBucket) -> observability_pb2.StatsBucket:
    return observability_pb2.StatsBucket(
        start_time=timestamp(bucket.start),
        completed=bucket.completed,
        failed=bucket.failed,
        cancelled=bucket.cancelled,
        active=bucket.active,
    )


def model_to_proto(priced: PricedModel) -> observability_pb2.ModelUsage:
    tokens = priced.tokens
    return observability_pb2.ModelUsage(
        provider=tokens.provider,
        model=tokens.model,
        calls=tokens.calls,
        input_tokens=tokens.input_tokens,
        output_tokens=tokens.output_tokens,
        cached_tokens=tokens.cached_tokens,
        estimated_cost_usd=priced.estimated_cost_usd,
        price_known=priced.price_known,
    )


def failure_to_proto(run: FailedRun) -> observability_pb2.ExecutionSummary:
    return observability_pb2.ExecutionSummary(
        name=name_of("executions", run.execution_id),
        workflow="" if run.workflow_id is None else name_of("workflows", run.workflow_id),
        error_code=run.error_code,
        error_message=run.error_message,
        create_time=timestamp(run.created_at),
        duration_ms=run.duration_ms or 0.0,
    )
