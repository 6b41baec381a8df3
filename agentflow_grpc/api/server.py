"""The grpc.aio server: servicers, the interceptors, standard health checking, reflection.

Two interceptors, outermost first: OpenTelemetry's (a SERVER span per call, continuing the
caller's W3C `traceparent`; standard health checks are not traced) and ours (`ApiInterceptor`),
which thus runs inside that span: its log lines carry the trace, and it returns `x-trace-id`.

`ApiServer.start(app, …)` binds (port 0: a free one) and serves; `stop(grace)` drains: the
standard health service turns NOT_SERVING first (so load balancers and Envoy stop sending new
calls), running calls and background runs get `grace` seconds, then what is left is cancelled —
and recorded as cancelled.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

from agentflow_grpc._gen.agentflow.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    execution_pb2,
    execution_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    observability_pb2,
    observability_pb2_grpc,
    source_pb2,
    source_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from agentflow_grpc._gen.agentflow.v1 import (
    health_pb2 as agentflow_health_pb2,
)
from agentflow_grpc._gen.agentflow.v1 import (
    health_pb2_grpc as agentflow_health_pb2_grpc,
)
from agentflow_grpc.api.call_audit import CallAudit
from agentflow_grpc.api.interceptors import ApiInterceptor
from agentflow_grpc.api.servicers.admin import AdminServicer
from agentflow_grpc.api.servicers.executions import ExecutionServicer
from agentflow_grpc.api.servicers.health import HealthServicer
from agentflow_grpc.api.servicers.identity import IdentityServicer
from agentflow_grpc.api.servicers.observability import ObservabilityServicer
from agentflow_grpc.api.servicers.sources import SourceServicer
from agentflow_grpc.api.servicers.standard_health import StandardHealth
from agentflow_grpc.api.servicers.workflows import WorkflowServicer
from agentflow_grpc.api.tls import ReloadingServerTls
from agentflow_grpc.app import App
from agentflow_grpc.model.records import Principal
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.api")

SERVICE_NAMES = (
    workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    source_pb2.DESCRIPTOR.services_by_name["SourceService"].full_name,
    execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
    observability_pb2.DESCRIPTOR.services_by_name["ObservabilityService"].full_name,
    agentflow_health_pb2.DESCRIPTOR.services_by_name["HealthService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
)
_RECORDING_SPARE = 5.0  # seconds for cancelled runs to store their last events


@dataclass
class ApiServer:
    server: grpc.aio.Server
    app: App
    address: str  # host:port actually bound
    health: StandardHealth
    interceptor: ApiInterceptor

    @classmethod
    async def start(
        cls,
        app: App,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int,
        reuse_port: bool = False,
        tls: ReloadingServerTls | None = None,
    ) -> ApiServer:
        """`reuse_port`: bind with SO_REUSEPORT, to share the port with the other processes of
        one `agentflow serve --processes N` (their supervisor made sure nobody else has it);
        without it, a second server on the same port fails. `tls`: serve TLS only (mutual when
        it names client authorities); None: plain text."""

        async def admit(principal: Principal) -> None:
            await app.limiter.admit_request(principal.tenant_id, principal.api_key_id)

        interceptor = ApiInterceptor(
            app.authenticator.authenticate,
            metrics=app.metrics,
            admit=admit,
            record_internal_error=app.error_groups.record_internal,
            audit=CallAudit(app.audit.record),
        )
        tracing = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=app.tracing.provider,
            filter_=filters.negate(filters.health_check()),  # probes, every few seconds
        )
        server = grpc.aio.server(
            interceptors=[tracing, interceptor],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ],
        )
        workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(
            WorkflowServicer(app.workflows), server
        )
        source_pb2_grpc.add_SourceServiceServicer_to_server(SourceServicer(app.sources), server)
        execution_pb2_grpc.add_ExecutionServiceServicer_to_server(
            ExecutionServicer(app.executions, app.webhooks), server
        )
        observability_pb2_grpc.add_ObservabilityServiceServicer_to_server(
            ObservabilityServicer(app.error_groups, app.stats, app.profiler), server
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(app.tenants, app.audit, app.limiter.policy), server
        )
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(
            IdentityServicer(app.tenants, app.settings), server
        )
        agentflow_health_pb2_grpc.add_HealthServiceServicer_to_server(
            HealthServicer(app.health), server
        )
        health = StandardHealth()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )  # fmt: skip
        credentials = None if tls is None else tls.credentials()  # before anything listens
        try:
            if credentials is None:
                bound = server.add_insecure_port(f"{host}:{port}")
            else:
                bound = server.add_secure_port(f"{host}:{port}", credentials)
        except RuntimeError:  # grpc's way of saying the address is taken or not ours
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}: the address is in use or not local")
        await server.start()
        for name in ("", *SERVICE_NAMES):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        address = f"{host}:{bound}"
        app.workers.start()
        log.info("server.started", address=address, tls=tls is not None)
        return cls(server, app, address, health, interceptor)

    async def stop(self, grace: float) -> None:
        """Drain and stop (see the module doc)."""
        log.info("server.stopping", grace_s=grace)
        await self.health.enter_graceful_shutdown()
        await self.app.workers.stop()  # no more jobs taken up here
        # Stop taking calls now; calls still running get until the runs they drive have ended
        # (at `grace`, cancelled) and recorded that, with a few seconds to spare.
        stopping = asyncio.create_task(self.server.stop(grace + _RECORDING_SPARE))
        await self.app.executions.shutdown(grace)
        await stopping
        await self.interceptor.internal_errors.wait()  # internal errors still being recorded
        await self.interceptor.audit_written()  # audit rows of the last calls
        log.info("server.stopped")

    async def wait(self) -> None:
        await self.server.wait_for_termination()
