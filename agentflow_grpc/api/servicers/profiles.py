"""ObservabilityService's ProfileServer (api/servicers/observability.py puts the parts together)."""

from __future__ import annotations

import math

from google.protobuf import duration_pb2

from agentflow_grpc._gen.agentflow.v1 import observability_pb2
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.services.profiling import ProfileFormat, ServerProfiler

_Request = observability_pb2.ProfileServerRequest
FORMATS = {
    _Request.FORMAT_UNSPECIFIED: ProfileFormat.HTML,
    _Request.FORMAT_HTML: ProfileFormat.HTML,
    _Request.FORMAT_SPEEDSCOPE: ProfileFormat.SPEEDSCOPE,
}


class ProfileMethods:
    _profiler: ServerProfiler

    async def ProfileServer(
        self, request: observability_pb2.ProfileServerRequest, context: Context
    ) -> observability_pb2.ServerProfile:
        """Samples the process that takes the call: behind a load balancer, whichever that is
        (`pid` and `host` say which)."""
        profile_format = FORMATS.get(request.format)
        if profile_format is None:
            raise InvalidArgumentError(f"format {request.format} is not known", field="format")
        seconds = (
            request.duration.seconds + request.duration.nanos / 1e9
            if request.HasField("duration")
            else None
        )
        profile = await self._profiler.profile(
            current_principal(), seconds, profile_format, time_limit=context.time_remaining()
        )
        duration = duration_pb2.Duration()
        duration.FromNanoseconds(math.floor(profile.seconds * 1e9))
        return observability_pb2.ServerProfile(
            content_type=profile.content_type,
            content=profile.content,
            pid=profile.pid,
            host=profile.host,
            duration=duration,
            sample_count=profile.sample_count,
        )
