"""AgentFlow errors → gRPC statuses, in one table, with google.rpc.Status details.

Every status carries an ErrorInfo (reason: the error's stable code, domain `agentflow.dev`) and a
RequestInfo (the request id). Invalid specs, inputs and arguments add a BadRequest whose field
violations name the field (`spec/nodes/1/config/prompt`: the request field, then the
validator's JSON Pointer) and the violation code. Anything not in the table is INTERNAL, with
the request id to find the logged traceback by, and no detail of the exception.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from agentflow_grpc.model.errors import (
    AgentFlowError,
    AlreadyExistsError,
    ConfigurationError,
    ConflictError,
    EtagMismatchError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidInputsError,
    InvalidSpecError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SecretDecryptionError,
    SourceConfigError,
    SpecReadError,
    UnauthenticatedError,
    UnavailableError,
)

DOMAIN = "agentflow.dev"

STATUS_CODES: dict[type[AgentFlowError], grpc.StatusCode] = {
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    EtagMismatchError: grpc.StatusCode.ABORTED,
    ConflictError: grpc.StatusCode.ABORTED,
    InvalidSpecError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidInputsError: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    SpecReadError: grpc.StatusCode.INVALID_ARGUMENT,
    SourceConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    SecretDecryptionError: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigurationError: grpc.StatusCode.FAILED_PRECONDITION,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_code(error: AgentFlowError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return grpc.StatusCode.INTERNAL


def status_of(error: AgentFlowError, request_id: str) -> status_pb2.Status:
    code = status_code(error)
    details = [
        error_details_pb2.ErrorInfo(
            reason=error.code, domain=DOMAIN, metadata={"request_id": request_id}
        ),
        error_details_pb2.RequestInfo(request_id=request_id),
    ]
    bad_request = _bad_request(error)
    if bad_request is not None:
        details.append(bad_request)
    if isinstance(error, ResourceExhaustedError):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(1, round(error.retry_after * 1e9)))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    elif code is grpc.StatusCode.UNAVAILABLE:
        details.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1)))
    return _status(code, error.message, details)


def internal_status(request_id: str) -> status_pb2.Status:
    message = f"internal error; request id {request_id}"
    details = [
        error_details_pb2.ErrorInfo(
            reason="internal", domain=DOMAIN, metadata={"request_id": request_id}
        ),
        error_details_pb2.RequestInfo(request_id=request_id),
    ]
    return _status(grpc.StatusCode.INTERNAL, message, details)


def _status(code: grpc.StatusCode, message: str, details: list[object]) -> status_pb2.Status:
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)  # type: ignore[arg-type]
        packed.append(wrapper)
    return status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message[:4000], details=packed
    )


def _bad_request(error: AgentFlowError) -> error_details_pb2.BadRequest | None:
    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    if isinstance(error, InvalidSpecError):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=f"{error.field}{violation.path}",
                description=violation.message,
                reason=str(violation.code),
            )
            for violation in error.violations
        ]
    elif isinstance(error, InvalidInputsError):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=violation.path.removeprefix("/"),  # `/inputs/x` → `inputs/x`
                description=violation.message,
                reason=violation.code,
            )
            for violation in error.violations
        ]
    elif isinstance(error, InvalidArgumentError):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=error.field, description=error.message, reason=error.code
            )
        ]
    if not violations:
        return None
    return error_details_pb2.BadRequest(field_violations=violations)
