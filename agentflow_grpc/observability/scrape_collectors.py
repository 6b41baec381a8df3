"""Families read when Prometheus scrapes rather than kept up to date: the database pool's use and
the job queue's depth (`metrics.Metrics.watch_database_pool`, `watch_queue`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agentflow_grpc.observability.metric_names import DB_POOL_CONNECTIONS, DB_POOL_MAX, QUEUE_DEPTH

PoolUse: TypeAlias = tuple[int, int, int]  # connections in use, idle, and the most allowed
QueueDepth: TypeAlias = tuple[int, int]  # jobs waiting for a worker, jobs claimed and not done


class PoolCollector(Collector):
    def __init__(self, use: Callable[[], PoolUse]) -> None:
        self._use = use

    def describe(self) -> Iterable[Metric]:
        return self._families((0, 0, 0))

    def collect(self) -> Iterable[Metric]:
        return self._families(self._use())

    @staticmethod
    def _families(use: PoolUse) -> Sequence[Metric]:
        in_use, idle, most = use
        connections = GaugeMetricFamily(
            DB_POOL_CONNECTIONS,
            "Database connections of the pool, by state (in_use, idle).",
            labels=["state"],
        )
        connections.add_metric(["in_use"], in_use)
        connections.add_metric(["idle"], idle)
        return [
            connections,
            GaugeMetricFamily(DB_POOL_MAX, "Most database connections the pool opens.", most),
        ]


class QueueCollector(Collector):
    def __init__(self) -> None:
        self.depth: QueueDepth | None = None  # None: not read (or the read failed)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(QUEUE_DEPTH, "", labels=["state"])]

    def collect(self) -> Iterable[Metric]:
        if self.depth is None:
            return []
        waiting, claimed = self.depth
        family = GaugeMetricFamily(
            QUEUE_DEPTH,
            "Background executions in the job queue (shared by the replicas): waiting for a "
            "worker, or claimed by one and not yet done.",
            labels=["state"],
        )
        family.add_metric(["waiting"], waiting)
        family.add_metric(["claimed"], claimed)
        return [family]
