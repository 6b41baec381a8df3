"""The Authenticator on the real PostgreSQL and Valkey: API keys refused for what they are
(unknown, revoked, expired), cached only while revocations reach the server, a revoke reaching
another "replica" (its own Redis client and cache) within a second, every call looking its key
up while Redis is away, last use written in the background; and sign-ins through a
TokenVerifier (a small issuer of our own here: verifying OpenID Connect tokens is
identity/oidc.py's, tested against a real OpenID Provider).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from support.api_helpers import eventually
from support.network import closed_port
from support.storage import ACTOR

from agentflow_grpc.devstack.valkey import EmbeddedValkey
from agentflow_grpc.keyspace import RedisKeys
from agentflow_grpc.limits import Invalidations
from agentflow_grpc.model.errors import PermissionDeniedError, UnauthenticatedError
from agentflow_grpc.model.records import Principal, Role, SignIn, Tenant
from agentflow_grpc.services.authentication import Authenticator
from agentflow_grpc.services.tenants import TenantService
from agentflow_grpc.storage.database import Database

CACHE_SECONDS = 60.0  # far longer than any test: whatever is dropped, a message dropped it


@dataclass
class Replica:
    """One server's view: its own Redis client, invalidation listener and caches."""

    tenants: TenantService
    authenticator: Authenticator
    invalidations: Invalidations


Replicas = Callable[..., AbstractAsyncContextManager[Replica]]


@pytest.fixture
def replicas(database: Database, redis_url: str) -> Replicas:
    """Makes replicas sharing the database and (by default) the session's Valkey, under a
    prefix of this test's own."""
    keys = RedisKeys(f"test-{uuid.uuid4().hex[:8]}")

    @asynccontextmanager
    async def replica(
        url: str = redis_url, *, wait_live: bool = True, **options: Any
    ) -> AsyncIterator[Replica]:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
        invalidations = Invalidations(client, keys, **options)
        authenticator = Authenticator(
            database, invalidations=invalidations, cache_seconds=CACHE_SECONDS
        )
        invalidations.start()
        try:
            if wait_live:
                await eventually(_returns(lambda: invalidations.live), timeout=5)
            yield Replica(
                TenantService(database, invalidations=invalidations), authenticator, invalidations
            )
        finally:
            await authenticator.close()
            await invalidations.close()
            await client.aclose()

    return replica


def _returns(check: Callable[[], bool]) -> Callable[[], Any]:
    async def checked() -> bool:
        return check()

    return checked


async def refused(authenticator: Authenticator, credential: str) -> str:
    """The message `credential` is refused with (AssertionError if it is let in)."""
    with pytest.raises(UnauthenticatedError) as refusal:
        await authenticator.authenticate(credential)
    return refusal.value.message


async def refused_within(authenticator: Authenticator, credential: str, seconds: float) -> float:
    """Seconds until `authenticator` refuses `credential`, polled; fails after `seconds`."""
    started = time.monotonic()
    while True:
        try:
            await authenticator.authenticate(credential)
        except UnauthenticatedError:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise AssertionError(f"still let in after {seconds} s")
        await asyncio.sleep(0.01)


async def revoke_behind_its_back(owner: asyncpg.Connection, key_id: uuid.UUID) -> None:
    """Revoke in the database only, as no server would: nobody is told, so a server that still
    lets the key in is answering from its cache."""
    await owner.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)


# --- API keys ---


async def test_a_live_key_gives_its_principal_and_unknown_revoked_expired_say_which(
    replicas: Replicas, tenant_a: Tenant
) -> None:
    async with replicas() as server:
        record, key = await server.tenants.create_api_key(
            tenant_a.id, role=Role.EDITOR, actor=ACTOR
        )
        principal = await server.authenticator.authenticate(key)
        assert principal == Principal(tenant_id=tenant_a.id, role=Role.EDITOR, api_key_id=record.id)

        assert await refused(server.authenticator, "af_" + "x" * 43) == "the API key is not valid"
        assert await refused(server.authenticator, key + "x") == "the API key is not valid"
        # Not `af_…` and no token verifier: just as invalid, whatever it is.
        assert await refused(server.authenticator, "eyJ.a.b") == "the API key is not valid"

        await server.tenants.revoke_api_key(tenant_a.id, record.id, actor=ACTOR)
        assert await refused(server.authenticator, key) == (
            f"the API key {record.prefix}… has been revoked"
        )
        _, rotated = await server.tenants.create_api_key(tenant_a.id, role=Role.VIEWER, actor=ACTOR)
        old = (await server.authenticator.authenticate(rotated)).api_key_id
        assert old is not None
        _, _, ended = await server.tenants.rotate_api_key(
            tenant_a.id, old, grace=timedelta(0), actor=ACTOR
        )
        assert ended.expires_at is not None
        assert await refused(server.authenticator, rotated) == (
            f"the API key {ended.prefix}… expired at "
            f"{ended.expires_at.astimezone(UTC).isoformat(timespec='seconds')}"
        )


async def test_a_revoke_reaches_another_replica_with_a_warm_cache_within_a_second(
    replicas: Replicas, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async with replicas() as first, replicas() as second:
        record, key = await first.tenants.create_api_key(tenant_a.id, role=Role.ADMIN, actor=ACTOR)
        assert (await second.authenticator.authenticate(key)).api_key_id == record.id
        await revoke_behind_its_back(owner, record.id)
        # Its cache is warm: the second replica still lets the key in, told nothing.
        for _ in range(3):
            assert (await second.authenticator.authenticate(key)).api_key_id == record.id

        await first.tenants.revoke_api_key(tenant_a.id, record.id, actor=ACTOR)

        assert await refused_within(second.authenticator, key, seconds=1.0) < 1.0
        assert "has been revoked" in await refused(first.authenticator, key)


async def test_a_rotated_key_works_on_every_replica_until_its_grace_ends(
    replicas: Replicas, tenant_a: Tenant
) -> None:
    async with replicas() as first, replicas() as second:
        old, old_key = await first.tenants.create_api_key(
            tenant_a.id, role=Role.RUNNER, actor=ACTOR
        )
        assert (await second.authenticator.authenticate(old_key)).expires_at is None  # cached

        new, new_key, previous = await first.tenants.rotate_api_key(
            tenant_a.id, old.id, grace=timedelta(seconds=1.5), actor=ACTOR
        )

        ends = previous.expires_at
        assert ends is not None
        # The second replica dropped its entry at the message: it now knows the end.
        await eventually(lambda: _expiry_seen(second.authenticator, old_key, ends), timeout=1)
        assert (await second.authenticator.authenticate(new_key)).api_key_id == new.id
        await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()))
        for server in (first, second):
            assert "expired at" in await refused(server.authenticator, old_key)
            assert (await server.authenticator.authenticate(new_key)).api_key_id == new.id


async def _expiry_seen(authenticator: Authenticator, key: str, expires_at: datetime) -> bool:
    return (await authenticator.authenticate(key)).expires_at == expires_at


async def test_a_cached_key_is_refused_once_past_its_expiry(
    replicas: Replicas, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async with replicas() as server:
        expires_at = datetime.now(UTC) + timedelta(seconds=1)
        record, key = await server.tenants.create_api_key(
            tenant_a.id, role=Role.VIEWER, expires_at=expires_at, actor=ACTOR
        )
        assert (await server.authenticator.authenticate(key)).expires_at == expires_at
        # The database now says it never expires; the cached entry still knows it does.
        await owner.execute("UPDATE api_keys SET expires_at = NULL WHERE id = $1", record.id)
        await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 0.05)
        assert "expired at" in await refused(server.authenticator, key)


async def test_with_redis_down_every_call_looks_its_key_up(
    replicas: Replicas, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async with replicas(f"redis://127.0.0.1:{closed_port()}/0", wait_live=False) as server:
        record, key = await server.tenants.create_api_key(
            tenant_a.id, role=Role.RUNNER, actor=ACTOR
        )
        for _ in range(3):
            assert (await server.authenticator.authenticate(key)).api_key_id == record.id
        assert not server.invalidations.live

        await revoke_behind_its_back(owner, record.id)

        assert "has been revoked" in await refused(server.authenticator, key)


@pytest.mark.slow  # a Valkey of its own, started and stopped
async def test_a_lost_subscription_stops_the_cache_and_a_resubscription_forgets_it(
    replicas: Replicas, tenant_a: Tenant, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    valkey = EmbeddedValkey(tmp_path, persist=False)
    url = await asyncio.to_thread(valkey.start)
    try:
        async with replicas(url, ping_every=0.2, silence=0.6) as server:
            first, first_key = await server.tenants.create_api_key(
                tenant_a.id, role=Role.RUNNER, actor=ACTOR
            )
            second, second_key = await server.tenants.create_api_key(
                tenant_a.id, role=Role.RUNNER, actor=ACTOR
            )
            for key in (first_key, second_key):
                await server.authenticator.authenticate(key)

            # Every subscriber's connection cut: whether redis-py subscribes again on its own
            # or the listener does, what was cached goes (a message may have been missed).
            await revoke_behind_its_back(owner, first.id)
            assert (await server.authenticator.authenticate(first_key)).api_key_id == first.id
            async with redis.Redis.from_url(url) as admin:
                assert await admin.client_kill_filter(_type="pubsub") >= 1
            assert await refused_within(server.authenticator, first_key, seconds=2.0) < 2.0

            # Redis gone: the subscription counts as lost within its silence, and every call
            # goes to PostgreSQL from then on.
            await eventually(_returns(lambda: server.invalidations.live), timeout=5)
            await server.authenticator.authenticate(second_key)
            await asyncio.to_thread(valkey.stop)
            started = time.monotonic()
            await eventually(_returns(lambda: not server.invalidations.live), timeout=3)
            assert time.monotonic() - started < 1.5
            await revoke_behind_its_back(owner, second.id)
            assert "has been revoked" in await refused(server.authenticator, second_key)
    finally:
        await asyncio.to_thread(valkey.stop)


async def test_last_use_is_written_in_the_background_once_a_minute_at_most(
    replicas: Replicas, tenant_a: Tenant, owner: asyncpg.Connection
) -> None:
    async with replicas() as first, replicas() as second:
        record, key = await first.tenants.create_api_key(tenant_a.id, role=Role.VIEWER, actor=ACTOR)
        before = datetime.now(UTC)

        await first.authenticator.authenticate(key)

        async def last_use() -> datetime | None:
            value: datetime | None = await owner.fetchval(
                "SELECT last_used_at FROM api_keys WHERE id = $1", record.id
            )
            return value

        written = await eventually(last_use, timeout=5)
        assert before - timedelta(seconds=1) <= written <= datetime.now(UTC)
        # Again here, and on another server: within the minute, the note stays as it was.
        for server in (first, second, first):
            await server.authenticator.authenticate(key)
        await asyncio.sleep(0.3)
        assert await last_use() == written
        (listed,) = await first.tenants.list_api_keys(tenant_a.id)
        assert listed.last_used_at == written


# --- sign-ins through a token verifier ---


class Issuer:
    """A TokenVerifier of tokens it issued itself: each stands for one SignIn, valid until its
    `expires_at` (or for a person whose groups map to no role: None); counts verifications."""

    def __init__(self) -> None:
        self.issued: dict[str, SignIn | None] = {}
        self.verified = 0

    def issue(
        self,
        tenant_name: str,
        *,
        role: Role | None = Role.EDITOR,
        subject: str = "ada",
        lifetime: timedelta = timedelta(hours=1),
    ) -> str:
        token = f"eyJ.{secrets.token_urlsafe(16)}.sig"
        self.issued[token] = (
            None
            if role is None
            else SignIn(
                issuer="https://idp.example",
                subject=subject,
                tenant_name=tenant_name,
                role=role,
                expires_at=datetime.now(UTC) + lifetime,
            )
        )
        return token

    def sign_in_of(self, token: str) -> SignIn:
        signed_in = self.issued[token]
        assert signed_in is not None
        return signed_in

    async def sign_in(self, token: str) -> SignIn:
        self.verified += 1
        if token not in self.issued:
            raise UnauthenticatedError("the access token is not valid")
        signed_in = self.issued[token]
        if signed_in is None:
            raise PermissionDeniedError("no group of the token maps to a role")
        if signed_in.expires_at <= datetime.now(UTC):
            raise UnauthenticatedError("the access token has expired")
        return signed_in


@dataclass
class SignIns:
    """What `on_sign_in` was told."""

    seen: list[tuple[SignIn, Principal]]

    async def __call__(self, signed_in: SignIn, principal: Principal) -> None:
        self.seen.append((signed_in, principal))


def signing_in(
    database: Database, issuer: Issuer, sign_ins: SignIns, *, cache_seconds: float
) -> Authenticator:
    return Authenticator(
        database,
        invalidations=None,
        cache_seconds=cache_seconds,
        verifier=issuer,
        on_sign_in=sign_ins,
    )


async def test_a_signed_in_person_gets_the_tenant_and_role_their_token_names(
    database: Database, tenant_a: Tenant
) -> None:
    issuer, sign_ins = Issuer(), SignIns([])
    authenticator = signing_in(database, issuer, sign_ins, cache_seconds=CACHE_SECONDS)
    token = issuer.issue("tenant-a", role=Role.ADMIN)

    principal = await authenticator.authenticate(token)

    expected = Principal(
        tenant_id=tenant_a.id,
        role=Role.ADMIN,
        subject="https://idp.example#ada",
        expires_at=issuer.sign_in_of(token).expires_at,
    )
    assert principal == expected
    assert principal.actor == "oidc:https://idp.example#ada"
    for _ in range(3):  # from the cache: verified once, told once
        assert await authenticator.authenticate(token) == expected
    assert issuer.verified == 1
    assert sign_ins.seen == [(issuer.sign_in_of(token), expected)]
    # API keys still work beside it.
    _, key = await TenantService(database).create_api_key(
        tenant_a.id, role=Role.RUNNER, actor=ACTOR
    )
    assert (await authenticator.authenticate(key)).role is Role.RUNNER


async def test_a_token_is_verified_again_when_its_cache_entry_ends_and_told_once(
    database: Database, tenant_a: Tenant
) -> None:
    issuer, sign_ins = Issuer(), SignIns([])
    authenticator = signing_in(database, issuer, sign_ins, cache_seconds=0.3)
    token = issuer.issue("tenant-a")
    short = issuer.issue("tenant-a", subject="grace", lifetime=timedelta(seconds=0.5))

    await authenticator.authenticate(token)
    await authenticator.authenticate(short)
    await asyncio.sleep(0.35)
    await authenticator.authenticate(token)

    assert issuer.verified == 3  # the cache entry ended after 0.3 s
    assert [signed_in.subject for signed_in, _ in sign_ins.seen] == ["ada", "grace"]
    await asyncio.sleep(0.4)
    # Past its `exp`: the verifier is asked again, and refuses it.
    assert await refused(authenticator, short) == "the access token has expired"


async def test_a_sign_in_to_an_unknown_tenant_or_with_no_role_is_refused(
    database: Database, tenant_a: Tenant
) -> None:
    issuer, sign_ins = Issuer(), SignIns([])
    authenticator = signing_in(database, issuer, sign_ins, cache_seconds=CACHE_SECONDS)

    unknown = issuer.issue("elsewhere")
    assert await refused(authenticator, unknown) == (
        "the sign-in names tenant 'elsewhere', which this server does not have"
    )
    with pytest.raises(PermissionDeniedError):
        await authenticator.authenticate(issuer.issue("tenant-a", role=None))
    assert await refused(authenticator, "eyJ.forged.sig") == "the access token is not valid"
    assert sign_ins.seen == []


async def test_a_failing_sign_in_hook_fails_the_call_and_is_told_again_next_time(
    database: Database, tenant_a: Tenant
) -> None:
    issuer, calls = Issuer(), []

    async def audit_down(signed_in: SignIn, principal: Principal) -> None:
        calls.append(signed_in.subject)
        if len(calls) == 1:
            raise ConnectionError("the audit log is down")

    authenticator = Authenticator(
        database,
        invalidations=None,
        cache_seconds=CACHE_SECONDS,
        verifier=issuer,
        on_sign_in=audit_down,
    )
    token = issuer.issue("tenant-a")
    with pytest.raises(ConnectionError):
        await authenticator.authenticate(token)
    assert (await authenticator.authenticate(token)).tenant_id == tenant_a.id
    await authenticator.authenticate(token)
    assert calls == ["ada", "ada"]
