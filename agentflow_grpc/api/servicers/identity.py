"""IdentityService: how the page signs people in (public), and who the caller is."""

from __future__ import annotations

from agentflow_grpc._gen.agentflow.v1 import identity_pb2, identity_pb2_grpc
from agentflow_grpc.api import convert_admin
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.config import Settings
from agentflow_grpc.services.tenants import TenantService


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, tenants: TenantService, settings: Settings) -> None:
        self._tenants = tenants
        self._sign_in = _sign_in_config(settings)

    async def GetSignInConfig(
        self, request: identity_pb2.GetSignInConfigRequest, context: Context
    ) -> identity_pb2.SignInConfig:
        return self._sign_in

    async def GetCaller(
        self, request: identity_pb2.GetCallerRequest, context: Context
    ) -> identity_pb2.Caller:
        principal = current_principal()
        tenant = await self._tenants.get_tenant(principal.tenant_id)
        return convert_admin.caller_to_proto(principal, tenant)


def _sign_in_config(settings: Settings) -> identity_pb2.SignInConfig:
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return identity_pb2.SignInConfig(enabled=False)
    return identity_pb2.SignInConfig(
        enabled=True,
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        scopes=settings.oidc_scopes,
        audience=settings.oidc_audience or "",
    )
