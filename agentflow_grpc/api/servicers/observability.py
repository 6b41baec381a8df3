"""ObservabilityService: error groups, the stats dashboard's numbers, server profiles.

One servicer, its methods in one module per part (proto in → service → proto out):
`error_groups.py` (ListErrorGroups, GetErrorGroup), `stats.py` (GetStats) and `profiles.py`
(ProfileServer).
"""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import observability_pb2_grpc
from agentflow_grpc.api.servicers.error_groups import ErrorGroupMethods
from agentflow_grpc.api.servicers.profiles import ProfileMethods
from agentflow_grpc.api.servicers.stats import StatsMethods
from agentflow_grpc.services.error_groups import ErrorGroupService
from agentflow_grpc.services.profiling import ServerProfiler
from agentflow_grpc.services.stats import StatsService


class ObservabilityServicer(
    ErrorGroupMethods,
    StatsMethods,
    ProfileMethods,
    observability_pb2_grpc.ObservabilityServiceServicer,
):
    def __init__(
        self, error_groups: ErrorGroupService, stats: StatsService, profiler: ServerProfiler
    ) -> None:
        self._error_groups = error_groups
        self._stats = stats
        self._profiler = profiler
