"""SourceService: proto in → SourceService (services/) → proto out. Secrets go in, never out."""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import source_pb2, source_pb2_grpc
from agentflow_grpc.api import convert
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.api.fields import check_mask, optional_request_id
from agentflow_grpc.services.sources import SourceService

UPDATABLE = {"display_name", "description", "config", "secrets"}


class SourceServicer(source_pb2_grpc.SourceServiceServicer):
    def __init__(self, sources: SourceService) -> None:
        self._sources = sources

    async def CreateSource(
        self, request: source_pb2.CreateSourceRequest, context: Context
    ) -> source_pb2.Source:
        source = request.source
        created = await self._sources.create(
            current_principal(),
            name=source.display_name,
            type=source.type,
            description=source.description,
            config=convert.struct_to_dict(source.config),
            secrets=dict(source.secrets),
            request_id=optional_request_id(request.request_id),
        )
        return convert.source_to_proto(created)

    async def GetSource(
        self, request: source_pb2.GetSourceRequest, context: Context
    ) -> source_pb2.Source:
        source_id = convert.id_from_name(request.name, "sources")
        return convert.source_to_proto(await self._sources.get(current_principal(), source_id))

    async def ListSources(
        self, request: source_pb2.ListSourcesRequest, context: Context
    ) -> source_pb2.ListSourcesResponse:
        page = await self._sources.list(
            current_principal(), page_size=request.page_size, page_token=request.page_token
        )
        return source_pb2.ListSourcesResponse(
            sources=[convert.source_to_proto(source) for source in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateSource(
        self, request: source_pb2.UpdateSourceRequest, context: Context
    ) -> source_pb2.Source:
        paths = check_mask(
            request.update_mask, allowed=UPDATABLE, field="update_mask", required=True
        )
        source = request.source
        updated = await self._sources.update(
            current_principal(),
            convert.id_from_name(source.name, "sources", field="source.name"),
            etag=source.etag or None,
            name=source.display_name if "display_name" in paths else None,
            description=source.description if "description" in paths else None,
            config=convert.struct_to_dict(source.config) if "config" in paths else None,
            secrets=dict(source.secrets) if "secrets" in paths else None,
        )
        return convert.source_to_proto(updated)

    async def DeleteSource(
        self, request: source_pb2.DeleteSourceRequest, context: Context
    ) -> source_pb2.Source:
        source_id = convert.id_from_name(request.name, "sources")
        deleted = await self._sources.delete(
            current_principal(), source_id, etag=request.etag or None
        )
        return convert.source_to_proto(deleted)

    async def TestSource(
        self, request: source_pb2.TestSourceRequest, context: Context
    ) -> source_pb2.TestSourceResponse:
        source_id = convert.id_from_name(request.name, "sources")
        result = await self._sources.test(current_principal(), source_id)
        return source_pb2.TestSourceResponse(
            ok=result.ok, message=result.message, latency_ms=result.latency_ms
        )
