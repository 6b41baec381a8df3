"""Who is calling: an API key (`af_…`) or an OpenID Connect access token → a Principal.

API keys are looked up by their SHA-256 in PostgreSQL and refused when unknown, revoked or
expired. What was looked up is kept for `cache_seconds`, but trusted only while the server hears
every `Invalidation` (limits/invalidations.py: a revoke, a rotation) the moment it is published;
while it cannot (Redis down), every call looks its key up again. So a revoked key is refused by
every server within a second, cached or not. A cached key still carries its expiry, and is
refused once past it. When a key was used is written at most once a minute per key, in the
background: never on the call's path, never failing it.

Any other credential goes to the `TokenVerifier` when one is configured (identity/oidc.py):
its `SignIn` names a tenant, looked up by name, and a role. A verified token is kept (by its
SHA-256) until it expires or `cache_seconds` pass, and `on_sign_in` is told of each token the
first time this server verifies it, so that sign-ins can be audited once each.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cachetools import TLRUCache, TTLCache

from agentflow_grpc.limits.invalidations import Invalidation, Invalidations
from agentflow_grpc.model.errors import NotFoundError, UnauthenticatedError
from agentflow_grpc.model.records import ApiKey, Principal, SignIn
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.storage import tenants as store
from agentflow_grpc.storage.database import Database

log = get_logger("agentflow.authentication")

NOT_VALID = "the API key is not valid"
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
_TENANT_NAMES_SECONDS = 300.0  # a tenant's name never changes: its id is kept this long
_TOUCHES_PENDING = 100  # last-used writes under way at most; more wait for the next minute


class TokenVerifier(Protocol):
    """Verifies an access token and maps its claims (identity/oidc.py); raises
    UnauthenticatedError (not valid) or PermissionDeniedError (valid, but no role)."""

    async def sign_in(self, token: str) -> SignIn: ...


# Told of a person signed in, once per token this server verified (to audit the sign-in).
SignInHook = Callable[[SignIn, Principal], Awaitable[None]]


def principal_of_key(key: ApiKey | None, now: datetime) -> Principal:
    """The principal of a live key; UnauthenticatedError saying why any other is refused
    (never whether a key unknown here exists elsewhere)."""
    if key is None:
        raise UnauthenticatedError(NOT_VALID)
    if key.revoked_at is not None:
        raise UnauthenticatedError(f"the API key {key.prefix}… has been revoked")
    _check_expiry(key.prefix, key.expires_at, now)
    return store.principal_of(key)


def _check_expiry(prefix: str, expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        when = expires_at.astimezone(UTC).isoformat(timespec="seconds")
        raise UnauthenticatedError(f"the API key {prefix}… expired at {when}")


@dataclass(frozen=True, slots=True)
class _CachedKey:
    principal: Principal
    prefix: str


class Authenticator:
    def __init__(
        self,
        database: Database,
        *,
        invalidations: Invalidations | None,
        cache_seconds: float,
        cache_size: int = 10_000,
        verifier: TokenVerifier | None = None,
        on_sign_in: SignInHook | None = None,
    ) -> None:
        """`invalidations`: the channel revocations arrive on (None: keys are never cached);
        `cache_seconds` (AGENTFLOW_API_KEY_CACHE_SECONDS, 0: nothing cached) and `cache_size`
        bound what is kept; `verifier` signs people in with tokens (None: API keys only)."""
        self._database = database
        self._invalidations = invalidations
        self._cache_seconds = cache_seconds
        self._verifier = verifier
        self._on_sign_in = on_sign_in
        # Live keys looked up, by the key's SHA-256.
        self._keys: TTLCache[bytes, _CachedKey] = TTLCache(
            cache_size, cache_seconds, timer=time.monotonic
        )
        # Verified tokens, by their SHA-256, until they expire or `cache_seconds` pass.
        self._tokens: TLRUCache[bytes, Principal] = TLRUCache(
            cache_size, ttu=self._token_kept_until, timer=time.time
        )
        # Tokens whose sign-in `on_sign_in` was told of, until they expire.
        self._signed_in: TLRUCache[bytes, datetime] = TLRUCache(
            cache_size, ttu=lambda _token, expires_at, _now: expires_at.timestamp(), timer=time.time
        )
        self._tenant_ids: TTLCache[str, uuid.UUID] = TTLCache(
            cache_size, _TENANT_NAMES_SECONDS, timer=time.monotonic
        )
        # Keys whose use was noted within the minute (here), and the writes under way.
        self._touched: TTLCache[uuid.UUID, bool] = TTLCache(
            cache_size, TOUCH_EVERY.total_seconds(), timer=time.monotonic
        )
        self._touches: set[asyncio.Task[None]] = set()
        if invalidations is not None:
            invalidations.on_invalidation(self._forget)

    async def authenticate(self, credential: str) -> Principal:
        """The caller behind `credential`; UnauthenticatedError (or, for a signed-in person
        with no role, PermissionDeniedError) when there is none."""
        if credential.startswith(store.KEY_PREFIX):
            principal = await self._api_key(credential)
            self._touch(principal)
            return principal
        if self._verifier is None:
            raise UnauthenticatedError(NOT_VALID)
        return await self._token(credential, self._verifier)

    async def close(self) -> None:
        """Stop the last-used writes still under way (a minute's note is all they would lose)."""
        for task in self._touches:
            task.cancel()
        await asyncio.gather(*self._touches, return_exceptions=True)

    # --- API keys ---

    def _trusted(self) -> bool:
        """Whether the cache may be used: every revocation would reach it now."""
        return (
            self._cache_seconds > 0 and self._invalidations is not None and self._invalidations.live
        )

    async def _api_key(self, credential: str) -> Principal:
        digest = store.hash_key(credential)
        if self._trusted():
            cached = self._keys.get(digest)
            if cached is not None:
                _check_expiry(cached.prefix, cached.principal.expires_at, datetime.now(UTC))
                return cached.principal
        generation = None if self._invalidations is None else self._invalidations.generation
        async with self._database.system() as connection:
            record = await store.find_api_key(connection, credential)
        principal = principal_of_key(record, datetime.now(UTC))
        if (
            record is not None
            and self._trusted()
            and self._invalidations is not None
            and self._invalidations.generation == generation
        ):
            self._keys[digest] = _CachedKey(principal, record.prefix)
        return principal

    def _forget(self, invalidation: Invalidation | None) -> None:
        """Drop the key named (everything: None); a tenant's limits concern no key."""
        if invalidation is None:
            self._keys.clear()
        elif invalidation.api_key_id is not None:
            for digest, cached in list(self._keys.items()):
                if cached.principal.api_key_id == invalidation.api_key_id:
                    self._keys.pop(digest, None)

    def _touch(self, principal: Principal) -> None:
        """Write the key's last use in the background, once a minute at most."""
        key_id = principal.api_key_id
        if key_id is None or key_id in self._touched or len(self._touches) >= _TOUCHES_PENDING:
            return
        self._touched[key_id] = True
        task = asyncio.create_task(self._write_last_use(principal.tenant_id, key_id))
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)

    async def _write_last_use(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        try:
            async with self._database.tenant(tenant_id) as connection:
                await store.touch_api_key(connection, tenant_id, key_id, every=TOUCH_EVERY)
        except Exception as exc:  # a missed note of use: logged, never the call's failure
            log.warning(
                "authentication.last_use_unrecorded",
                api_key_id=str(key_id),
                error=f"{type(exc).__name__}: {exc}",
            )

    # --- OpenID Connect ---

    def _token_kept_until(self, _token: bytes, principal: Principal, now: float) -> float:
        """Kept until the token expires, or `cache_seconds` pass, whichever is first."""
        kept_until = now + self._cache_seconds
        if principal.expires_at is None:
            return kept_until
        return min(principal.expires_at.timestamp(), kept_until)

    async def _token(self, token: str, verifier: TokenVerifier) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._tokens.get(digest)
        if cached is not None:
            return cached
        signed_in = await verifier.sign_in(token)
        principal = Principal(
            tenant_id=await self._tenant_named(signed_in.tenant_name),
            role=signed_in.role,
            subject=f"{signed_in.issuer}#{signed_in.subject}",
            expires_at=signed_in.expires_at,
        )
        if self._on_sign_in is not None and digest not in self._signed_in:
            self._signed_in[digest] = signed_in.expires_at
            try:
                await self._on_sign_in(signed_in, principal)
            except BaseException:
                self._signed_in.pop(digest, None)  # told again on the next call
                raise
        if self._cache_seconds > 0:
            self._tokens[digest] = principal
        return principal

    async def _tenant_named(self, name: str) -> uuid.UUID:
        tenant_id = self._tenant_ids.get(name)
        if tenant_id is not None:
            return tenant_id
        try:
            async with self._database.system() as connection:
                tenant = await store.find_tenant(connection, name)
        except NotFoundError:
            raise UnauthenticatedError(
                f"the sign-in names tenant {name[:63]!r}, which this server does not have"
            ) from None
        self._tenant_ids[name] = tenant.id
        return tenant.id
