"""API keys' lifecycle and tenants' limits through TenantService, on the real PostgreSQL.

Create (role, description, expiry, workflows), list (never a key), revoke (idempotent), rotate
(a grace period, at most 30 days; not a revoked key), a tenant's own limits; each refusal names
the request field at fault, another tenant's key is NotFound, every change has its audit row,
and the runtime role may change a tenant's limits and nothing else of it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from support.storage import ACTOR

from agentflow_grpc.model.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnauthenticatedError,
)
from agentflow_grpc.model.records import ApiKeyState, Role, Tenant, TenantLimits
from agentflow_grpc.services.tenants import TenantService
from agentflow_grpc.storage import audit, workflows
from agentflow_grpc.storage.database import Database


@pytest.fixture
def service(database: Database) -> TenantService:
    return TenantService(database)


async def new_workflow(database: Database, tenant: Tenant, name: str) -> uuid.UUID:
    async with database.tenant(tenant.id) as connection:
        created = await workflows.create(
            connection, tenant.id, name=name, spec={"name": name}, spec_hash=name, actor=ACTOR
        )
    return created.id


async def actions(database: Database, tenant: Tenant) -> list[str]:
    async with database.tenant(tenant.id) as connection:
        return [entry.action for entry in await audit.list_entries(connection, tenant.id)]


async def test_a_key_is_created_with_expiry_and_workflows_and_listed_without_its_secret(
    service: TenantService, database: Database, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    first = await new_workflow(database, tenant_a, "first")
    second = await new_workflow(database, tenant_a, "second")
    expires_at = datetime.now(UTC) + timedelta(days=30)

    record, key = await service.create_api_key(
        tenant_a.id,
        role=Role.RUNNER,
        description="deploys",
        expires_at=expires_at,
        workflow_ids=[first, second, first],
        actor=ACTOR,
    )

    assert key.startswith("af_")
    assert record.prefix == key[:12]
    assert record.tenant_id == tenant_a.id
    assert (record.role, record.description, record.created_by) == (Role.RUNNER, "deploys", ACTOR)
    assert record.expires_at == expires_at
    assert record.workflow_ids == (first, second)  # repeats dropped, order kept
    assert record.rotated_from is None
    assert record.last_used_at is None
    assert record.state(datetime.now(UTC)) is ApiKeyState.ACTIVE
    stored = await owner.fetchrow("SELECT * FROM api_keys WHERE id = $1", record.id)
    assert stored["workflow_ids"] == [first, second]

    listed = await service.list_api_keys(tenant_a.id)
    assert listed == [record]
    assert key[12:] not in repr(listed)

    principal = await service.authenticate(key)
    assert principal.api_key_id == record.id
    assert principal.workflow_ids == frozenset({first, second})
    assert principal.may_use_workflow(first)
    assert not principal.may_use_workflow(uuid.uuid4())
    assert principal.expires_at == expires_at
    assert await actions(database, tenant_a) == [
        "tenant.create",
        "workflow.create",
        "workflow.create",
        "api_key.create",
    ]


async def test_an_unrestricted_key_created_by_tenant_name_for_the_cli(
    service: TenantService, tenant_a: Tenant
) -> None:
    record, key = await service.create_api_key("tenant-a", role=Role.ADMIN, actor=ACTOR)
    assert record.tenant_id == tenant_a.id
    assert record.workflow_ids is None
    assert record.expires_at is None
    principal = await service.authenticate(key)
    assert principal.workflow_ids is None
    assert not principal.restricted
    with pytest.raises(NotFoundError, match="no tenant named 'nobody'"):
        await service.create_api_key("nobody", role=Role.ADMIN, actor=ACTOR)


async def test_a_key_asked_with_a_bad_expiry_or_workflow_is_refused_naming_the_field(
    service: TenantService, database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    theirs = await new_workflow(database, tenant_b, "theirs")
    deleted = await new_workflow(database, tenant_a, "deleted")
    async with database.tenant(tenant_a.id) as connection:
        await workflows.delete(connection, tenant_a.id, deleted, etag=None, actor=ACTOR)
    refusals = [
        ({"expires_at": datetime.now(UTC) - timedelta(seconds=1)}, "expires_at", "future"),
        ({"expires_at": datetime(2099, 1, 1)}, "expires_at", "time zone"),
        ({"workflow_ids": [theirs]}, "workflow_ids", str(theirs)),  # another tenant's
        ({"workflow_ids": [deleted]}, "workflow_ids", str(deleted)),
        ({"workflow_ids": [uuid.UUID(int=7)]}, "workflow_ids", str(uuid.UUID(int=7))),
    ]
    for arguments, field, named in refusals:
        with pytest.raises(InvalidArgumentError) as refused:
            await service.create_api_key(tenant_a.id, role=Role.VIEWER, actor=ACTOR, **arguments)
        assert refused.value.field == field
        assert named in refused.value.message
    assert await service.list_api_keys(tenant_a.id) == []


async def test_revoking_is_idempotent_and_refuses_the_key(
    service: TenantService, database: Database, tenant_a: Tenant
) -> None:
    record, key = await service.create_api_key(tenant_a.id, role=Role.EDITOR, actor=ACTOR)

    revoked = await service.revoke_api_key(tenant_a.id, record.id, actor=ACTOR)
    again = await service.revoke_api_key(tenant_a.id, record.id, actor=ACTOR)

    assert revoked.revoked_at is not None
    assert again.revoked_at == revoked.revoked_at
    assert revoked.state(datetime.now(UTC)) is ApiKeyState.REVOKED
    assert await service.list_api_keys(tenant_a.id) == [revoked]
    with pytest.raises(UnauthenticatedError, match="has been revoked"):
        await service.authenticate(key)
    assert (await actions(database, tenant_a)).count("api_key.revoke") == 1


async def test_rotation_keeps_role_description_and_workflows_and_ends_the_old_key_after_grace(
    service: TenantService, database: Database, tenant_a: Tenant
) -> None:
    workflow = await new_workflow(database, tenant_a, "only")
    old, old_key = await service.create_api_key(
        tenant_a.id, role=Role.RUNNER, description="ci", workflow_ids=[workflow], actor=ACTOR
    )
    before = datetime.now(UTC)

    new, new_key, previous = await service.rotate_api_key(
        tenant_a.id, old.id, grace=timedelta(hours=1), actor=ACTOR
    )

    assert new_key != old_key
    assert new.id != old.id
    assert (new.role, new.description, new.workflow_ids) == (Role.RUNNER, "ci", (workflow,))
    assert new.rotated_from == old.id
    assert new.expires_at is None
    assert previous.id == old.id
    assert previous.expires_at is not None
    assert before + timedelta(hours=1) - timedelta(seconds=5) <= previous.expires_at
    assert previous.expires_at <= datetime.now(UTC) + timedelta(hours=1)
    assert (await service.authenticate(old_key)).api_key_id == old.id  # within its grace
    assert (await service.authenticate(new_key)).api_key_id == new.id

    # Rotating again never moves the old key's end later: the earlier end stays.
    _, _, still = await service.rotate_api_key(
        tenant_a.id, old.id, grace=timedelta(days=2), actor=ACTOR
    )
    assert still.expires_at == previous.expires_at
    # No grace: it ends now.
    _, _, ended = await service.rotate_api_key(tenant_a.id, old.id, grace=timedelta(0), actor=ACTOR)
    assert ended.expires_at is not None
    assert ended.expires_at <= datetime.now(UTC)
    with pytest.raises(UnauthenticatedError, match="expired at"):
        await service.authenticate(old_key)
    # Each rotation: the new key's creation, then the old key's change.
    assert await actions(database, tenant_a) == [
        "tenant.create",
        "workflow.create",
        "api_key.create",
        *["api_key.create", "api_key.rotate"] * 3,
    ]


async def test_a_grace_period_outside_0_to_30_days_and_a_revoked_key_are_refused(
    service: TenantService, tenant_a: Tenant
) -> None:
    record, _ = await service.create_api_key(tenant_a.id, role=Role.VIEWER, actor=ACTOR)
    for grace in (timedelta(seconds=-1), timedelta(days=30, seconds=1)):
        with pytest.raises(InvalidArgumentError, match="0 to 30 days") as refused:
            await service.rotate_api_key(tenant_a.id, record.id, grace=grace, actor=ACTOR)
        assert refused.value.field == "grace_period"
    await service.revoke_api_key(tenant_a.id, record.id, actor=ACTOR)
    with pytest.raises(
        FailedPreconditionError, match="revoked key cannot be rotated"
    ) as refused_revoked:
        await service.rotate_api_key(tenant_a.id, record.id, grace=timedelta(0), actor=ACTOR)
    assert refused_revoked.value.code == "api_key.revoked"
    assert len(await service.list_api_keys(tenant_a.id)) == 1  # nothing was made


async def test_a_tenant_cannot_list_revoke_or_rotate_another_tenants_keys(
    service: TenantService, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    theirs, key = await service.create_api_key(tenant_b.id, role=Role.ADMIN, actor=ACTOR)

    assert await service.list_api_keys(tenant_a.id) == []
    with pytest.raises(NotFoundError):
        await service.revoke_api_key(tenant_a.id, theirs.id, actor=ACTOR)
    with pytest.raises(NotFoundError):
        await service.rotate_api_key(tenant_a.id, theirs.id, grace=timedelta(0), actor=ACTOR)

    assert await service.list_api_keys(tenant_b.id) == [theirs]  # untouched
    assert (await service.authenticate(key)).tenant_id == tenant_b.id


async def test_a_key_expires_on_its_own(service: TenantService, tenant_a: Tenant) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    record, key = await service.create_api_key(
        tenant_a.id, role=Role.VIEWER, expires_at=expires_at, actor=ACTOR
    )
    assert (await service.authenticate(key)).api_key_id == record.id
    await asyncio.sleep(1.1)
    with pytest.raises(UnauthenticatedError) as refused:
        await service.authenticate(key)
    when = expires_at.isoformat(timespec="seconds")
    assert refused.value.message == f"the API key {record.prefix}… expired at {when}"
    (listed,) = await service.list_api_keys(tenant_a.id)
    assert listed.state(datetime.now(UTC)) is ApiKeyState.EXPIRED


async def test_an_unknown_key_and_anything_else_say_only_not_valid(
    service: TenantService,
) -> None:
    for credential in ("af_" + "x" * 43, "not-a-key", ""):
        with pytest.raises(UnauthenticatedError) as refused:
            await service.authenticate(credential)
        assert refused.value.message == "the API key is not valid"


# --- tenants' limits ---


async def test_a_tenants_limits_are_set_read_back_and_reset(
    service: TenantService, database: Database, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    assert (await service.get_tenant(tenant_a.id)).limits == TenantLimits()
    limits = TenantLimits(requests_per_second=2.5, request_burst=5, tokens_per_day=0)

    updated = await service.update_tenant_limits(tenant_a.id, limits, actor=ACTOR)

    assert updated.limits == limits
    assert (await service.get_tenant(tenant_a.id)) == updated
    assert await service.tenant_limits(tenant_a.id) == limits
    stored = await owner.fetchval("SELECT limits FROM tenants WHERE id = $1", tenant_a.id)
    assert stored == '{"request_burst": 5, "tokens_per_day": 0, "requests_per_second": 2.5}'

    reset = await service.update_tenant_limits(tenant_a.id, TenantLimits(), actor=ACTOR)
    assert reset.limits == TenantLimits()
    assert (await actions(database, tenant_a))[-2:] == [
        "tenant.update_limits",
        "tenant.update_limits",
    ]
    assert await service.tenant_limits(uuid.uuid4()) == TenantLimits()  # no such tenant


async def test_changes_of_different_limits_at_once_both_hold(
    service: TenantService, tenant_a: Tenant
) -> None:
    await service.update_tenant_limits(tenant_a.id, TenantLimits(request_burst=9), actor=ACTOR)
    # Each names one limit; what it leaves unset is kept, read under the row's lock.
    await asyncio.gather(
        *(
            service.update_tenant_limits(tenant_a.id, limits, only={name}, actor=ACTOR)
            for name, limits in (
                ("tokens_per_day", TenantLimits(tokens_per_day=100)),
                ("max_concurrent_executions", TenantLimits(max_concurrent_executions=4)),
            )
        )
    )
    assert await service.tenant_limits(tenant_a.id) == TenantLimits(
        request_burst=9, tokens_per_day=100, max_concurrent_executions=4
    )
    # A limit the change does not name is neither set nor checked.
    ignored = TenantLimits(request_burst=0, tokens_per_day=None)
    await service.update_tenant_limits(tenant_a.id, ignored, only={"tokens_per_day"}, actor=ACTOR)
    assert await service.tenant_limits(tenant_a.id) == TenantLimits(
        request_burst=9, max_concurrent_executions=4
    )


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        (TenantLimits(request_burst=0), "limits.request_burst"),
        (TenantLimits(key_request_burst=0), "limits.key_request_burst"),
        (TenantLimits(requests_per_second=-1), "limits.requests_per_second"),
        (TenantLimits(key_requests_per_second=float("nan")), "limits.key_requests_per_second"),
        (TenantLimits(max_concurrent_executions=-1), "limits.max_concurrent_executions"),
        (
            TenantLimits(key_max_concurrent_executions=2.5),  # type: ignore[arg-type]  # a fraction
            "limits.key_max_concurrent_executions",
        ),
        (TenantLimits(tokens_per_day=10**16), "limits.tokens_per_day"),
    ],
)
async def test_a_limit_out_of_range_is_refused_naming_its_field(
    service: TenantService, tenant_a: Tenant, limits: TenantLimits, field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        await service.update_tenant_limits(tenant_a.id, limits, actor=ACTOR)
    assert refused.value.field == field
    assert refused.value.message.startswith(f"{field} must be ")
    assert (await service.get_tenant(tenant_a.id)).limits == TenantLimits()


async def test_another_tenant_is_not_found_and_the_app_role_may_change_only_limits(
    service: TenantService, database: Database, tenant_a: Tenant, tenant_b: Tenant
) -> None:
    missing = uuid.uuid4()
    with pytest.raises(NotFoundError):
        await service.get_tenant(missing)
    with pytest.raises(NotFoundError):
        await service.update_tenant_limits(missing, TenantLimits(request_burst=3), actor=ACTOR)
    async with database.tenant(tenant_a.id) as connection:
        # Row-level security: tenant B's row is not there to change from tenant A.
        changed = await connection.execute(
            "UPDATE tenants SET limits = '{\"request_burst\": 9}' WHERE id = $1", tenant_b.id
        )
        assert changed == "UPDATE 0"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with database.tenant(tenant_a.id) as connection:
            await connection.execute(
                "UPDATE tenants SET name = 'renamed' WHERE id = $1", tenant_a.id
            )
    assert (await service.get_tenant(tenant_b.id)).limits == TenantLimits()
