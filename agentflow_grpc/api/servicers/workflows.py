"""WorkflowService: proto in → WorkflowService (services/) → proto out."""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import workflow_pb2, workflow_pb2_grpc
from agentflow_grpc.api import convert
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.api.fields import check_mask, optional_request_id
from agentflow_grpc.model.errors import InvalidSpecError
from agentflow_grpc.services.workflows import WorkflowService


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, workflows: WorkflowService) -> None:
        self._workflows = workflows

    async def CreateWorkflow(
        self, request: workflow_pb2.CreateWorkflowRequest, context: Context
    ) -> workflow_pb2.Workflow:
        spec = convert.struct_to_dict(request.workflow.spec)
        try:
            workflow = await self._workflows.create(
                current_principal(), spec, request_id=optional_request_id(request.request_id)
            )
        except InvalidSpecError as exc:
            raise InvalidSpecError(exc.violations, field="workflow.spec") from None
        return convert.workflow_to_proto(workflow)

    async def GetWorkflow(
        self, request: workflow_pb2.GetWorkflowRequest, context: Context
    ) -> workflow_pb2.Workflow:
        workflow_id = convert.id_from_name(request.name, "workflows")
        return convert.workflow_to_proto(
            await self._workflows.get(current_principal(), workflow_id)
        )

    async def ListWorkflows(
        self, request: workflow_pb2.ListWorkflowsRequest, context: Context
    ) -> workflow_pb2.ListWorkflowsResponse:
        page = await self._workflows.list(
            current_principal(),
            page_size=request.page_size,
            page_token=request.page_token,
            name=request.spec_name or None,
            show_deleted=request.show_deleted,
        )
        return workflow_pb2.ListWorkflowsResponse(
            workflows=[convert.workflow_to_proto(workflow) for workflow in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateWorkflow(
        self, request: workflow_pb2.UpdateWorkflowRequest, context: Context
    ) -> workflow_pb2.Workflow:
        check_mask(request.update_mask, allowed={"spec"}, field="update_mask")
        workflow_id = convert.id_from_name(
            request.workflow.name, "workflows", field="workflow.name"
        )
        spec = convert.struct_to_dict(request.workflow.spec)
        try:
            workflow = await self._workflows.update(
                current_principal(), workflow_id, spec, etag=request.workflow.etag or None
            )
        except InvalidSpecError as exc:
            raise InvalidSpecError(exc.violations, field="workflow.spec") from None
        return convert.workflow_to_proto(workflow)

    async def DeleteWorkflow(
        self, request: workflow_pb2.DeleteWorkflowRequest, context: Context
    ) -> workflow_pb2.Workflow:
        workflow_id = convert.id_from_name(request.name, "workflows")
        workflow = await self._workflows.delete(
            current_principal(), workflow_id, etag=request.etag or None
        )
        return convert.workflow_to_proto(workflow)

    async def ListWorkflowVersions(
        self, request: workflow_pb2.ListWorkflowVersionsRequest, context: Context
    ) -> workflow_pb2.ListWorkflowVersionsResponse:
        workflow_id = convert.id_from_name(request.parent, "workflows", field="parent")
        page = await self._workflows.list_versions(
            current_principal(),
            workflow_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return workflow_pb2.ListWorkflowVersionsResponse(
            versions=[convert.version_to_proto(version) for version in page.items],
            next_page_token=page.next_page_token,
        )

    async def ValidateWorkflow(
        self, request: workflow_pb2.ValidateWorkflowRequest, context: Context
    ) -> workflow_pb2.ValidateWorkflowResponse:
        result = await self._workflows.validate(
            current_principal(), convert.struct_to_dict(request.spec)
        )
        return convert.validation_to_proto(result)
