"""ExecutionService: proto in → ExecutionService (services/) → proto out; streams of events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from agentflow_grpc._gen.agentflow.v1 import execution_pb2, execution_pb2_grpc
from agentflow_grpc.api import convert, convert_webhooks
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.api.fields import optional_request_id
from agentflow_grpc.model.errors import AgentFlowError, InvalidArgumentError, RunMovedError
from agentflow_grpc.model.events import EventType, ExecutionEvent
from agentflow_grpc.services.executions import ExecutionService, RunRequest
from agentflow_grpc.services.webhooks import WebhookService

RunMessage = execution_pb2.ExecuteWorkflowRequest | execution_pb2.StartExecutionRequest


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    def __init__(self, executions: ExecutionService, webhooks: WebhookService) -> None:
        self._executions = executions
        self._webhooks = webhooks

    async def ExecuteWorkflow(
        self, request: execution_pb2.ExecuteWorkflowRequest, context: Context
    ) -> AsyncIterator[execution_pb2.ExecutionEvent]:
        """The client's deadline bounds the run; a client that goes away cancels it, unless
        the request says `on_disconnect: CONTINUE`."""
        keep_running = _keeps_running(request.on_disconnect)
        run = await self._executions.start(
            current_principal(),
            _run_request(request, timeout=None if keep_running else context.time_remaining()),
            keep_running=keep_running,
        )
        last: ExecutionEvent | None = None
        try:
            async for event in run.events():
                last = event
                yield convert.event_to_proto(event)
        except Exception as exc:
            # The stream has started, so its status alone could go unseen by clients that
            # read events only (an SSE stream's HTTP status is already 200): end it with an
            # event saying so, then the status.
            if isinstance(exc, RunMovedError):  # it goes on elsewhere: where to follow it
                yield _stream_error(run.id, last.sequence if last else 0, exc)
            elif last is None or not last.is_terminal:  # it ended with this stream
                yield convert.event_to_proto(_failure_event(run.id, last, _error_of(exc)))
            raise

    async def StartExecution(
        self, request: execution_pb2.StartExecutionRequest, context: Context
    ) -> execution_pb2.Execution:
        execution = await self._executions.start_background(
            current_principal(), _run_request(request, request_id=request.request_id)
        )
        return convert.execution_to_proto(execution)

    async def StreamExecution(
        self, request: execution_pb2.StreamExecutionRequest, context: Context
    ) -> AsyncIterator[execution_pb2.ExecutionEvent]:
        execution_id = convert.id_from_name(request.name, "executions")
        last: ExecutionEvent | None = None
        try:
            async for event in self._executions.stream(
                current_principal(), execution_id, after_sequence=request.after_sequence
            ):
                last = event
                yield convert.event_to_proto(event)
        except Exception as exc:
            # Following broke off, not the run (which goes on): say so in the stream, with
            # where to resume, unless nothing was sent yet (then the status says it all).
            if last is not None and not last.is_terminal:
                yield _stream_error(execution_id, last.sequence, _error_of(exc))
            raise

    async def GetExecution(
        self, request: execution_pb2.GetExecutionRequest, context: Context
    ) -> execution_pb2.Execution:
        execution_id = convert.id_from_name(request.name, "executions")
        detail = await self._executions.get(current_principal(), execution_id)
        return convert.execution_to_proto(detail.execution, detail.trace, detail.profile)

    async def ListExecutions(
        self, request: execution_pb2.ListExecutionsRequest, context: Context
    ) -> execution_pb2.ListExecutionsResponse:
        try:
            statuses = [convert.STATUS_OF_STATE[state] for state in request.states]
        except KeyError:
            raise InvalidArgumentError(
                "states holds STATE_UNSPECIFIED or an unknown state", field="states"
            ) from None
        page = await self._executions.list(
            current_principal(),
            page_size=request.page_size,
            page_token=request.page_token,
            statuses=statuses,
            workflow_id=(
                convert.id_from_name(request.workflow, "workflows", field="workflow")
                if request.workflow
                else None
            ),
            created_after=convert.datetime_of(request.create_time_after, field="create_time_after"),
            created_before=convert.datetime_of(
                request.create_time_before, field="create_time_before"
            ),
        )
        return execution_pb2.ListExecutionsResponse(
            executions=[convert.execution_to_proto(execution) for execution in page.items],
            next_page_token=page.next_page_token,
        )

    async def CancelExecution(
        self, request: execution_pb2.CancelExecutionRequest, context: Context
    ) -> execution_pb2.Execution:
        execution_id = convert.id_from_name(request.name, "executions")
        execution = await self._executions.cancel(
            current_principal(), execution_id, reason=request.reason[:500]
        )
        return convert.execution_to_proto(execution)

    async def ListWebhookDeliveries(
        self, request: execution_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> execution_pb2.ListWebhookDeliveriesResponse:
        execution_id = convert.id_from_name(request.name, "executions")
        deliveries = await self._webhooks.deliveries(current_principal(), execution_id)
        return execution_pb2.ListWebhookDeliveriesResponse(
            deliveries=[convert_webhooks.delivery_to_proto(d) for d in deliveries]
        )


def _run_request(
    request: RunMessage, *, timeout: float | None = None, request_id: str = ""
) -> RunRequest:
    if request.workflow and request.HasField("spec"):
        raise InvalidArgumentError("give either workflow or spec, not both", field="spec")
    if request.version < 0:
        raise InvalidArgumentError("version must be positive", field="version")
    return RunRequest(
        inputs=convert.struct_to_dict(request.inputs),
        workflow_id=(
            convert.id_from_name(request.workflow, "workflows", field="workflow")
            if request.workflow
            else None
        ),
        version=request.version or None,
        spec=convert.struct_to_dict(request.spec) if request.HasField("spec") else None,
        timeout=timeout,
        request_id=optional_request_id(request_id),
        webhook_source=request.webhook_source or None,
    )


STREAM_ERROR = "stream_error"  # not a run's event: never stored, sequence 0


def _error_of(exc: Exception) -> AgentFlowError:
    if isinstance(exc, AgentFlowError):
        return exc
    return AgentFlowError("internal error (the status names the request id)")


def _keeps_running(policy: int) -> bool:
    if policy not in execution_pb2.DisconnectPolicy.values():
        raise InvalidArgumentError(
            f"on_disconnect {policy} is not a DisconnectPolicy", field="on_disconnect"
        )
    return policy == execution_pb2.DISCONNECT_POLICY_CONTINUE


def _stream_error(
    execution_id: uuid.UUID, last_sequence: int, error: AgentFlowError
) -> execution_pb2.ExecutionEvent:
    """The last message of a follower's stream that broke off: the run may well go on, and
    `StreamExecution(after_sequence=resume_after_sequence)` picks it up where this left it."""
    return execution_pb2.ExecutionEvent(
        execution=f"executions/{execution_id}",
        sequence=0,
        time=convert.timestamp(datetime.now(UTC)),
        type=STREAM_ERROR,
        data=convert.dict_to_struct(
            {
                "error": {"code": error.code, "message": error.message},
                "resume_after_sequence": last_sequence,
            }
        ),
    )


def _failure_event(
    execution_id: object, last: ExecutionEvent | None, error: AgentFlowError
) -> ExecutionEvent:
    return ExecutionEvent(
        execution_id=str(execution_id),
        sequence=(last.sequence if last else 0) + 1,
        timestamp=datetime.now(UTC),
        type=EventType.EXECUTION_FAILED,
        data={"error": {"code": error.code, "message": error.message}, "recorded": False},
    )
