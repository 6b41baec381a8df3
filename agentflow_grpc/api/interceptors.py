"""The one interceptor every call passes: request id, authentication, error mapping, access log.

It wraps each method's handler in a handler of the same shape (unary → unary, server-streaming
→ server-streaming), so a refusal reaches the client the way that RPC ends: a unary call gets
its status, a stream ends with it before any message. In order, for each call:

1. Request id: the caller's `x-request-id` (if sane) or a new one; sent back as initial metadata
   (a stream's with its first message) and, when the call fails, in the trailers too; so is
   the call's trace id, as `x-trace-id` (the span of OpenTelemetry's interceptor, which runs
   outside this one, continuing the caller's `traceparent`). Both, and later the tenant, are
   bound to every log line written for the call (observability/logging.py).
2. A request that did not parse (bad wire bytes, nesting beyond protobuf's limit) is
   INVALID_ARGUMENT, never INTERNAL: the deserializer hands a marker to the wrapper instead of
   raising inside gRPC. So is one holding what no field may (NUL characters, NaN).
3. Credential from `x-api-key` or `authorization: Bearer …` (an API key, or an OpenID Connect
   access token) → the caller's tenant and role; none, or one that is unknown, revoked or expired,
   is UNAUTHENTICATED. Then the method's row of the roles table (api/access.py): a role too weak,
   or a restricted key reaching beyond its workflows, is PERMISSION_DENIED. Public methods
   (health checks, reflection, the sign-in config) need no credential.
4. Rate limits (`admit`, the limiter's requests per second per tenant and per key, right after
   authentication; public methods are exempt): over them, RESOURCE_EXHAUSTED with the reason
   and a RetryInfo carrying the real retry-after.
5. AgentFlowError → its status (api/errors.py); anything else → INTERNAL with the request id, the
   traceback logged, never sent; and reported to the error tracker and recorded in the tenant's
   error groups, in the background (api/internal_errors.py).
6. The audit log (docs/security.md): every call's request id, trace id and peer address are the
   origin of the rows its changes write (model/audit_origin.py); a refused credential, a refused
   call and a change that failed are recorded here, as the change itself is not (`CallAudit`).
7. One structured access-log line per call: method, code, duration, tenant, request id; and
   the call in the metrics, `agentflow_rpc_requests_total{method,code}` and
   `agentflow_rpc_duration_seconds{method}` (every method the server serves, health checks and
   reflection included; a stream's duration runs to its status).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeAlias

import grpc
from grpc_status.rpc_status import GRPC_DETAILS_METADATA_KEY

from agentflow_grpc.api import access
from agentflow_grpc.api import context as call_context
from agentflow_grpc.api.call_audit import CallAudit
from agentflow_grpc.api.context import Context
from agentflow_grpc.api.errors import internal_status, status_code, status_of
from agentflow_grpc.api.fields import check_request
from agentflow_grpc.api.internal_errors import InternalErrorRecorder, InternalErrors
from agentflow_grpc.model.audit_origin import AuditOrigin, set_origin
from agentflow_grpc.model.errors import AgentFlowError, InvalidArgumentError, UnauthenticatedError
from agentflow_grpc.model.records import Principal
from agentflow_grpc.observability import spans
from agentflow_grpc.observability.logging import bind_context, clear_context, get_logger
from agentflow_grpc.observability.metric_children import RpcMetrics
from agentflow_grpc.observability.metrics import Metrics

log = get_logger("agentflow.api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Authenticator = Callable[[str], Awaitable[Principal]]
# Counts an authenticated call; raises ResourceExhaustedError when its tenant or key is over.
Admission = Callable[[Principal], Awaitable[None]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only


class Malformed:
    """Stands for a request whose bytes did not parse."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class ApiInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticate: Authenticator,
        *,
        metrics: Metrics,
        admit: Admission | None = None,
        record_internal_error: InternalErrorRecorder | None = None,
        audit: CallAudit | None = None,
    ) -> None:
        self._authenticate = authenticate
        self._admit = admit
        self.internal_errors = InternalErrors(record_internal_error)
        self._metrics = metrics
        self._audit = audit

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        public = access.is_public(method)
        deserialize = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, metadata, public),
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method, metadata, public),
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming methods in this API

    def _unary(
        self, behavior: Any, method: str, metadata: Mapping[str, Any], public: bool
    ) -> Callable[[Any, Context], Awaitable[Any]]:
        rpc = self._metrics.rpc(method)
        audited_by_call = self._audit is not None and access.rule_for(method).audited_by_call

        async def handle(request: Any, context: Context) -> Any:
            call = _Call(method, metadata, rpc, self.internal_errors)
            try:
                await call.begin(context, request, self._authenticate, self._admit, public)
                response = await behavior(request, context)
                if audited_by_call:
                    await self._succeeded(call, request, response)
                return response
            except BaseException as exc:
                await self._audited(call, request, exc)
                await call.fail(context, exc)
            finally:
                call.log()

        return handle

    def _stream(
        self, behavior: Any, method: str, metadata: Mapping[str, Any], public: bool
    ) -> Callable[[Any, Context], AsyncIterator[Any]]:
        rpc = self._metrics.rpc(method)
        audited_by_call = self._audit is not None and access.rule_for(method).audited_by_call

        async def handle(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call(method, metadata, rpc, self.internal_errors)
            try:
                await call.begin(
                    context,
                    request,
                    self._authenticate,
                    self._admit,
                    public,
                    send_request_id=False,
                )
                responses = behavior(request, context)
                if not hasattr(responses, "__aiter__"):  # it writes with context.write()
                    await call.send_request_id(context)
                    await responses
                    return
                async for response in responses:
                    if not call.messages:
                        await call.send_request_id(context)
                        if audited_by_call:
                            await self._succeeded(call, request, response)
                    call.messages += 1
                    yield response
            except BaseException as exc:
                await self._audited(call, request, exc)
                await call.fail(context, exc)
            finally:
                call.log()

        return handle

    async def audit_written(self) -> None:
        """Wait for the audit rows still being written in the background."""
        if self._audit is not None:
            await self._audit.close()

    async def _succeeded(self, call: _Call, request: Any, response: Any) -> None:
        """Record a call the roles table marks `audited_by_call` (a run started or cancelled)."""
        if self._audit is None or call.principal is None:
            return
        await self._audit.succeeded(
            method=call.method,
            principal=call.principal,
            request=request,
            response=response,
            metadata=call.metadata,
        )

    async def _audited(self, call: _Call, request: Any, exc: BaseException) -> None:
        """Record a refused credential, a refused call or a failed change (never fails the call)."""
        if self._audit is None or not isinstance(exc, Exception):
            return
        await self._audit.failed_call(
            method=call.method,
            request=request,
            principal=call.principal,
            error=exc,
            metadata=call.metadata,
            peer=call.peer,
        )


# Standard health checks: Envoy and load balancers ask every few seconds.
_PROBES = "/grpc.health.v1.Health/"


class _Call:
    """One call's bookkeeping: its request id, principal, outcome and timing."""

    def __init__(
        self,
        method: str,
        metadata: Mapping[str, Any],
        rpc: RpcMetrics,
        internal_errors: InternalErrors,
    ) -> None:
        self.method = method
        self.metadata = metadata
        self.rpc = rpc
        self.internal_errors = internal_errors
        given = str(metadata.get("x-request-id", ""))
        self.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        self.trace_id = spans.current_trace_id()  # the call's span's, when it has one
        self.principal: Principal | None = None
        self.code = grpc.StatusCode.OK
        self.messages = 0
        self.peer = ""
        self.started = time.perf_counter()

    async def begin(
        self,
        context: Context,
        request: Any,
        authenticate: Authenticator,
        admit: Admission | None,
        public: bool,
        *,
        send_request_id: bool = True,
    ) -> None:
        call_context.bind(None)
        clear_context()
        bind_context(request_id=self.request_id)
        rpc_span = spans.current_span()
        if rpc_span.is_recording():
            rpc_span.set_attribute("agentflow.request_id", self.request_id)
        # Read now: asking a call that has ended (a client that reset its stream) for its peer
        # crashes the process inside grpc's C core.
        self.peer = context.peer()
        set_origin(AuditOrigin(self.request_id, self.trace_id, self.peer))
        if send_request_id:
            await self.send_request_id(context)
        if isinstance(request, Malformed):
            raise InvalidArgumentError(
                f"the request could not be parsed: {request.reason}", field="request"
            )
        check_request(request)
        if public:  # health and reflection: no key needed, and any key sent is not checked
            return
        key = _api_key(self.metadata)
        if key is None:
            raise UnauthenticatedError(
                "no credential: send an API key as `x-api-key: <key>` or "
                "`authorization: Bearer <key>`, or an access token as `authorization: Bearer <JWT>`"
            )
        self.principal = await authenticate(key)
        call_context.bind(self.principal)
        bind_context(tenant_id=str(self.principal.tenant_id))
        if rpc_span.is_recording():
            rpc_span.set_attribute("agentflow.tenant.id", str(self.principal.tenant_id))
        access.check(self.method, self.principal, request)
        if admit is not None:
            await admit(self.principal)

    async def send_request_id(self, context: Context) -> None:
        await context.send_initial_metadata(self.ids())

    def ids(self) -> tuple[tuple[str, str], ...]:
        """`x-request-id`, and `x-trace-id` when the call is traced."""
        if self.trace_id is None:
            return (("x-request-id", self.request_id),)
        return (("x-request-id", self.request_id), ("x-trace-id", self.trace_id))

    async def fail(self, context: Context, exc: BaseException) -> None:
        """Turn `exc` into the call's status (re-raising what gRPC itself must see)."""
        if isinstance(exc, grpc.aio.AbortError):
            self.code = context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        if isinstance(exc, AgentFlowError):
            self.code = status_code(exc)
            status = status_of(exc, self.request_id)
        elif isinstance(exc, Exception):
            self.code = grpc.StatusCode.INTERNAL
            log.exception("rpc.crashed", method=self.method, request_id=self.request_id)
            self.internal_errors.crashed(
                exc,
                method=self.method,
                request_id=self.request_id,
                tenant_id=None if self.principal is None else self.principal.tenant_id,
            )
            status = internal_status(self.request_id)
        else:  # cancelled (the client went away, or the deadline passed), or shutting down
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        # The request id also rides in the trailers: a stream that fails before its first
        # message sends no headers of its own (a trailers-only response, whose status a proxy
        # such as Envoy can still turn into the HTTP status).
        await context.abort(
            self.code,
            status.message,
            trailing_metadata=(
                (GRPC_DETAILS_METADATA_KEY, status.SerializeToString()),
                *self.ids(),
            ),
        )

    def log(self) -> None:
        seconds = time.perf_counter() - self.started
        self.rpc.done(self.code.name, seconds)
        duration_ms = round(seconds * 1000, 3)
        fields: dict[str, Any] = {
            "method": self.method,
            "code": self.code.name,
            "duration_ms": duration_ms,
            "request_id": self.request_id,
            "peer": self.peer,
        }
        if self.principal is not None:
            fields["tenant_id"] = str(self.principal.tenant_id)
            fields["actor"] = self.principal.actor
            if self.principal.api_key_id is not None:
                fields["api_key_id"] = str(self.principal.api_key_id)
        if self.messages:
            fields["messages"] = self.messages
        if self.code is grpc.StatusCode.INTERNAL:
            log.error("rpc", **fields)
        elif self.code is grpc.StatusCode.OK and self.method.startswith(_PROBES):
            log.debug("rpc", **fields)  # a load balancer's probe, every few seconds
        else:
            log.info("rpc", **fields)


def _api_key(metadata: Mapping[str, Any]) -> str | None:
    key = metadata.get("x-api-key")
    if key:
        return str(key)
    authorization = str(metadata.get("authorization", ""))
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, or recursion beyond protobuf's nesting limit
            return Malformed(type(exc).__name__ if not str(exc) else str(exc)[:200])

    return parse
