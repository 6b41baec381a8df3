"""ObservabilityService's GetStats (api/servicers/observability.py puts the parts together):
proto in → StatsService → proto out."""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import observability_pb2
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.api.convert_stats import stats_to_proto, window_of
from agentflow_grpc.services.stats import StatsService


class StatsMethods:
    _stats: StatsService

    async def GetStats(
        self, request: observability_pb2.GetStatsRequest, context: Context
    ) -> observability_pb2.Stats:
        stats = await self._stats.get(
            current_principal(), window=window_of(request), bucket_count=request.bucket_count
        )
        return stats_to_proto(stats)
