"""ObservabilityService's ListErrorGroups and GetErrorGroup (see api/servicers/observability.py):
proto in → ErrorGroupService → proto out."""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import observability_pb2
from agentflow_grpc.api import convert
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.api.convert_errors import error_group_to_proto, fingerprint_from_name
from agentflow_grpc.services.error_groups import ErrorGroupService


class ErrorGroupMethods:
    _error_groups: ErrorGroupService

    async def ListErrorGroups(
        self, request: observability_pb2.ListErrorGroupsRequest, context: Context
    ) -> observability_pb2.ListErrorGroupsResponse:
        page = await self._error_groups.list(
            current_principal(),
            page_size=request.page_size,
            page_token=request.page_token,
            last_seen_after=convert.datetime_of(request.last_seen_after, field="last_seen_after"),
            code=request.code or None,
        )
        return observability_pb2.ListErrorGroupsResponse(
            error_groups=[error_group_to_proto(group) for group in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetErrorGroup(
        self, request: observability_pb2.GetErrorGroupRequest, context: Context
    ) -> observability_pb2.ErrorGroup:
        fingerprint = fingerprint_from_name(request.name)
        group = await self._error_groups.get(current_principal(), fingerprint)
        return error_group_to_proto(group)
