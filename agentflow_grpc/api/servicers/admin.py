"""AdminService: the caller's tenant's API keys, limits and audit log (admin role: the roles
table in api/access.py). Proto in → TenantService / AuditService → proto out."""

from __future__ import annotations

from datetime import timedelta

from agentflow_grpc._gen.agentflow.v1 import admin_pb2, admin_pb2_grpc
from agentflow_grpc.api import convert, convert_admin
from agentflow_grpc.api.context import Context, current_principal
from agentflow_grpc.api.fields import check_mask, fields_named
from agentflow_grpc.limits import LimitPolicy
from agentflow_grpc.model.errors import InvalidArgumentError
from agentflow_grpc.services.audit import AuditService
from agentflow_grpc.services.tenants import TenantService

# The domain's names of CreateApiKey's fields.
_KEY_FIELDS = {"expires_at": "api_key.expire_time", "workflow_ids": "api_key.workflows"}
TENANT_UPDATABLE = {"limits", *(f"limits.{name}" for name in convert_admin.LIMIT_FIELDS)}


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, tenants: TenantService, audit: AuditService, defaults: LimitPolicy) -> None:
        self._tenants = tenants
        self._audit = audit
        self._defaults = defaults

    async def CreateApiKey(
        self, request: admin_pb2.CreateApiKeyRequest, context: Context
    ) -> admin_pb2.CreateApiKeyResponse:
        principal = current_principal()
        given = request.api_key
        with fields_named(_KEY_FIELDS):
            key, secret = await self._tenants.create_api_key(
                principal.tenant_id,
                role=convert_admin.role_of(given.role, field="api_key.role"),
                description=given.description,
                expires_at=convert.datetime_of(given.expire_time, field="api_key.expire_time"),
                workflow_ids=convert_admin.workflow_ids(given.workflows, field="api_key.workflows"),
                actor=principal.actor,
            )
        return admin_pb2.CreateApiKeyResponse(
            api_key=convert_admin.api_key_to_proto(key), secret=secret
        )

    async def ListApiKeys(
        self, request: admin_pb2.ListApiKeysRequest, context: Context
    ) -> admin_pb2.ListApiKeysResponse:
        keys = await self._tenants.list_api_keys(current_principal().tenant_id)
        return admin_pb2.ListApiKeysResponse(
            api_keys=[convert_admin.api_key_to_proto(key) for key in keys]
        )

    async def RevokeApiKey(
        self, request: admin_pb2.RevokeApiKeyRequest, context: Context
    ) -> admin_pb2.ApiKey:
        principal = current_principal()
        key = await self._tenants.revoke_api_key(
            principal.tenant_id,
            convert.id_from_name(request.name, "apiKeys"),
            actor=principal.actor,
        )
        return convert_admin.api_key_to_proto(key)

    async def RotateApiKey(
        self, request: admin_pb2.RotateApiKeyRequest, context: Context
    ) -> admin_pb2.RotateApiKeyResponse:
        principal = current_principal()
        grace = _grace_period(request)
        new, secret, previous = await self._tenants.rotate_api_key(
            principal.tenant_id,
            convert.id_from_name(request.name, "apiKeys"),
            grace=grace or timedelta(0),
            actor=principal.actor,
        )
        return admin_pb2.RotateApiKeyResponse(
            api_key=convert_admin.api_key_to_proto(new),
            secret=secret,
            previous=convert_admin.api_key_to_proto(previous),
        )

    async def GetTenant(
        self, request: admin_pb2.GetTenantRequest, context: Context
    ) -> admin_pb2.Tenant:
        tenant = await self._tenants.get_tenant(current_principal().tenant_id)
        return convert_admin.tenant_to_proto(tenant, self._defaults)

    async def UpdateTenant(
        self, request: admin_pb2.UpdateTenantRequest, context: Context
    ) -> admin_pb2.Tenant:
        paths = check_mask(
            request.update_mask, allowed=TENANT_UPDATABLE, field="update_mask", required=True
        )
        principal = current_principal()
        # `limits` sets them all; `limits.<name>` only those, the others kept as they are.
        only = None if "limits" in paths else {path.removeprefix("limits.") for path in paths}
        tenant = await self._tenants.update_tenant_limits(
            principal.tenant_id,
            convert_admin.limits_from_proto(request.tenant.limits),
            only=only,
            actor=principal.actor,
        )
        return convert_admin.tenant_to_proto(tenant, self._defaults)

    async def ListAuditEvents(
        self, request: admin_pb2.ListAuditEventsRequest, context: Context
    ) -> admin_pb2.ListAuditEventsResponse:
        events, next_token = await self._audit.list_events(
            current_principal().tenant_id,
            actor=request.actor or None,
            action=request.action or None,
            resource_type=request.resource_type or None,
            resource_id=request.resource_id or None,
            since=convert.datetime_of(request.occur_time_after, field="occur_time_after"),
            until=convert.datetime_of(request.occur_time_before, field="occur_time_before"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return admin_pb2.ListAuditEventsResponse(
            audit_events=[convert_admin.audit_event_to_proto(event) for event in events],
            next_page_token=next_token,
        )


def _grace_period(request: admin_pb2.RotateApiKeyRequest) -> timedelta | None:
    if not request.HasField("grace_period"):
        return None
    try:
        grace = request.grace_period.ToTimedelta()
    except (ValueError, OverflowError):
        grace = None
    if grace is None or grace < timedelta(0):
        raise InvalidArgumentError(
            "grace_period must be a duration from 0 to 30 days", field="grace_period"
        )
    return grace
