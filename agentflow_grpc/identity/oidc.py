"""OpenID Connect sign-in: an issuer's access tokens verified and mapped to a tenant and a role.

`OidcConfig` is what the settings say (AGENTFLOW_OIDC_*); `OidcVerifier.sign_in(token)` turns
an `authorization: Bearer <JWT>` into a `SignIn` or refuses it, and `discovery()` gives the
page the issuer's endpoints for the authorization-code flow.

Verifying, in order (every JOSE step through joserfc):
1. The token parses as a JWS compact serialization whose payload is a JSON object (else
   `oidc.malformed`), signed with an asymmetric algorithm the issuer announces or RS256/ES256
   (never `none`, never HMAC: a published key must not double as a shared secret).
2. Its `iss` is the configured issuer, exactly (`oidc.wrong_issuer`), checked before any key is
   looked up, so tokens of other issuers never make this server fetch keys.
3. The key named by its `kid` is in the issuer's JWKS. The JWKS is fetched once and kept; a kid
   it lacks makes it fetched again (rotated keys), at most once per `refetch_interval`, so
   tokens with made-up kids cannot make this server hammer the issuer (`oidc.unknown_key`).
4. The signature (`oidc.bad_signature`), then `exp`, `nbf`, `iat` with the configured clock
   skew (`oidc.expired`, `oidc.not_yet_valid`) and `aud`, which must contain the configured
   audience (`oidc.wrong_audience`).
5. Its role claim (a string or a list) through the roles map, the strongest role winning
   (`oidc.no_role`); its tenant from the tenant claim, else the configured tenant
   (`oidc.no_tenant`). These two are PermissionDeniedError: the person is known, not admitted.

The issuer's discovery document (`{issuer}/.well-known/openid-configuration`, whose `issuer`
must equal the configured one) and JWKS are kept for `cache_seconds`; when refreshing them
fails, the copies held are used on. A failure to reach the issuer when nothing usable is held
is UnavailableError, remembered for `refetch_interval` (as is a discovery document naming
another issuer, a ConfigurationError), so a dead or misconfigured issuer costs one request per
interval, not one per call. Messages name the reason, never the token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import httpx2
from joserfc import jws
from joserfc.errors import (
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import JWKRegistry, Key
from joserfc.jwt import JWTClaimsRegistry

from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import (
    AgentFlowError,
    ConfigurationError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from agentflow_grpc.model.records import Role, SignIn
from agentflow_grpc.observability.logging import get_logger

log = get_logger("agentflow.identity.oidc")

T = TypeVar("T")
F = TypeVar("F", bound=AgentFlowError)

# The signature algorithms a token may use at all: asymmetric ones. The issuer's discovery
# document narrows them to those it announces (with RS256 and ES256 always in).
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        *("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
        *("ES256", "ES384", "ES512", "EdDSA", "Ed25519"),
    }
)
DEFAULT_ALGORITHMS = frozenset({"RS256", "ES256"})
# `typ` headers of an access token (RFC 9068) or a plain JWT; a token typed as anything else
# (a logout token, a DPoP proof) is not an access token.
ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
# Key types that verify signatures; symmetric (`oct`) keys in a JWKS are never used.
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
MAX_TOKEN_CHARS = 16_384
MAX_DOCUMENT_BYTES = 1_000_000  # a discovery document or a JWKS
WELL_KNOWN = "/.well-known/openid-configuration"

# Each role includes the ones after it in Role's declaration (model/records.py).
_STRENGTH = {role: rank for rank, role in enumerate(reversed(list(Role)))}


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """Which issuer's tokens sign people in, for which audience, and how their claims map."""

    issuer: str
    audience: str
    roles: Mapping[str, Role]  # a value of the role claim -> the role it grants
    role_claim: str = "groups"
    tenant_claim: str | None = None  # the claim naming the tenant; None: `tenant` for all
    tenant: str | None = None  # the tenant when no claim names one
    clock_skew: float = 30.0  # seconds allowed on exp, nbf, iat

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The settings' OpenID Connect configuration; None when no issuer is set (API keys
        only). ConfigurationError when an issuer is set without what sign-in needs."""
        if not settings.oidc_issuer:
            return None
        missing = [
            name
            for name, absent in (
                ("AGENTFLOW_OIDC_AUDIENCE", not settings.oidc_audience),
                ("AGENTFLOW_OIDC_ROLES", not settings.oidc_roles),
                (
                    "AGENTFLOW_OIDC_TENANT_CLAIM or AGENTFLOW_OIDC_TENANT",
                    not settings.oidc_tenant_claim and not settings.oidc_tenant,
                ),
            )
            if absent
        ]
        if missing:
            raise ConfigurationError(
                f"AGENTFLOW_OIDC_ISSUER is set, so sign-in also needs {', '.join(missing)}"
            )
        assert settings.oidc_audience is not None
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            roles={value: Role(role) for value, role in settings.oidc_roles.items()},
            role_claim=settings.oidc_role_claim,
            tenant_claim=settings.oidc_tenant_claim or None,
            tenant=settings.oidc_tenant or None,
            clock_skew=settings.oidc_clock_skew,
        )


@dataclass(frozen=True, slots=True)
class OidcDiscovery:
    """What the issuer's discovery document says that sign-in uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    algorithms: frozenset[str]  # signature algorithms accepted on its tokens


@dataclass(frozen=True, slots=True)
class _Held(Generic[T]):
    """What was read from the issuer, and when (monotonic seconds)."""

    value: T
    at: float

    def fresh(self, seconds: float) -> bool:
        return time.monotonic() - self.at < seconds


def _refused(reason: str, code: str) -> UnauthenticatedError:
    return UnauthenticatedError(f"the bearer token is not accepted: {reason}", code=code)


def _malformed(reason: str) -> UnauthenticatedError:
    return _refused(f"it is malformed ({reason})", "oidc.malformed")


class OidcVerifier:
    """Verifies one issuer's access tokens (a `TokenVerifier` for the authenticator); holds its
    discovery document and keys. One per server, closed with `aclose()`."""

    def __init__(
        self,
        config: OidcConfig,
        *,
        timeout: float = 5.0,
        cache_seconds: float = 3600.0,
        refetch_interval: float = 5.0,
    ) -> None:
        self.config = config
        self._cache_seconds = cache_seconds
        self._refetch_interval = refetch_interval
        self._client = httpx2.AsyncClient(timeout=timeout)
        self._lock = asyncio.Lock()  # one fetch from the issuer at a time
        self._discovery: _Held[OidcDiscovery] | None = None
        self._keys: _Held[list[Key]] | None = None
        self._keys_tried_at = float("-inf")  # the last JWKS fetch, failed or not
        self._failure: tuple[float, AgentFlowError] | None = None  # until when, and why

    async def aclose(self) -> None:
        await self._client.aclose()

    async def discovery(self) -> OidcDiscovery:
        """The issuer's endpoints (fetched, or as kept). UnavailableError when the issuer
        cannot be read; ConfigurationError when its document names another issuer."""
        held = self._discovery
        if held is not None and held.fresh(self._cache_seconds):
            return held.value
        async with self._lock:
            return await self._discovery_locked()

    async def sign_in(self, token: str) -> SignIn:
        """The person `token` signs in, or UnauthenticatedError (the token is not valid here)
        or PermissionDeniedError (valid, but its claims map to no role or tenant)."""
        signed, header, claims = self._parse(token)
        discovery = await self.discovery()
        algorithm = header.get("alg")
        if algorithm not in discovery.algorithms:
            accepted = ", ".join(sorted(discovery.algorithms))
            raise _refused(
                f"it is signed with an algorithm this server does not accept ({accepted})",
                "oidc.algorithm",
            )
        if claims.get("iss") != self.config.issuer:
            reason = (
                "it has no issuer (iss)" if "iss" not in claims else "it is from another issuer"
            )
            raise _refused(
                f"{reason}; this server accepts {self.config.issuer}", "oidc.wrong_issuer"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _malformed("its key id is not a string")
        key = await self._signing_key(kid, algorithm)
        self._check_signature(signed, key, algorithm)
        expires_at = self._check_claims(claims)
        role = self._role(claims)
        return SignIn(
            issuer=self.config.issuer,
            subject=claims["sub"],
            tenant_name=self._tenant(claims),
            role=role,
            expires_at=expires_at,
            token_id=claims.get("jti"),
        )

    # --- the token ---

    @staticmethod
    def _parse(token: str) -> tuple[jws.CompactSignature, dict[str, Any], dict[str, Any]]:
        """The token's JWS, header and claims, none of them verified yet."""
        if len(token) > MAX_TOKEN_CHARS:
            raise _malformed(f"longer than {MAX_TOKEN_CHARS} characters")
        try:
            signed = jws.extract_compact(token.encode("ascii"))
            claims = json.loads(signed.payload)
        except (JoseError, ValueError, TypeError):
            raise _malformed("not a signed JWT") from None
        if not isinstance(claims, dict):
            raise _malformed("its payload is not a JSON object")
        header = signed.headers()
        if not isinstance(header["alg"], str):
            raise _malformed("its algorithm is not a name")
        token_type = header.get("typ")
        if token_type is not None and str(token_type).lower() not in ACCESS_TOKEN_TYPES:
            raise _malformed("it is not typed as an access token")
        return signed, header, claims

    def _check_signature(self, signed: jws.CompactSignature, key: Key, algorithm: str) -> None:
        registry = jws.JWSRegistry(algorithms=[algorithm], strict_check_header=False)
        try:
            valid = jws.validate_compact(signed, key, registry=registry)
        except JoseError:  # the key does not fit the algorithm, or a header it cannot honour
            valid = False
        if not valid:
            raise _refused("its signature does not verify", "oidc.bad_signature")

    def _check_claims(self, claims: dict[str, Any]) -> datetime:
        """The token's expiry, once its registered claims are valid here (`jti`, when present,
        is a string)."""
        registry = JWTClaimsRegistry(
            leeway=int(self.config.clock_skew),
            sub={"essential": True},
            exp={"essential": True},
            aud={"essential": True, "value": self.config.audience},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _refused("it has expired", "oidc.expired") from None
        except MissingClaimError as exc:
            raise _malformed(f"it lacks the claims {exc.claim.replace(',', ', ')}") from None
        except ClaimError as exc:
            raise self._claim_refusal(exc.claim, claims.get(exc.claim)) from None
        try:
            return datetime.fromtimestamp(claims["exp"], UTC)
        except (OverflowError, ValueError, OSError):
            raise _malformed("its exp claim is out of range") from None

    def _claim_refusal(self, claim: str, value: object) -> UnauthenticatedError:
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if claim in ("nbf", "iat") and numeric:
            when = "its nbf is" if claim == "nbf" else "it was issued"
            return _refused(
                f"it is not yet valid ({when} later than now, beyond the allowed clock skew)",
                "oidc.not_yet_valid",
            )
        if claim == "aud" and isinstance(value, str | list):
            return _refused(
                f"it is for another audience; this server is {self.config.audience}",
                "oidc.wrong_audience",
            )
        return _malformed(f"its {claim} claim is not valid")

    def _role(self, claims: dict[str, Any]) -> Role:
        name = self.config.role_claim
        value = claims.get(name, [])
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(item, str) for item in values):
            raise PermissionDeniedError(
                f"your {name} cannot map to a role: the token's {name!r} claim is not a string "
                "or a list of strings",
                code="oidc.no_role",
            )
        roles = [self.config.roles[item] for item in values if item in self.config.roles]
        if not roles:
            raise PermissionDeniedError(
                f"your {name} map to no role on this server (its AGENTFLOW_OIDC_ROLES names none "
                "of them)",
                code="oidc.no_role",
            )
        return max(roles, key=_STRENGTH.__getitem__)

    def _tenant(self, claims: dict[str, Any]) -> str:
        name = self.config.tenant_claim
        if name is not None and name in claims:
            value = claims[name]
            if not isinstance(value, str) or not value:
                raise PermissionDeniedError(
                    f"the token's {name!r} claim does not name a tenant", code="oidc.no_tenant"
                )
            return value
        if self.config.tenant is not None:
            return self.config.tenant
        raise PermissionDeniedError(
            f"your token names no tenant (no {name!r} claim) and this server has no default one",
            code="oidc.no_tenant",
        )

    # --- the issuer's documents ---

    async def _signing_key(self, kid: str | None, algorithm: str) -> Key:
        """The issuer's key for `kid` that can verify `algorithm`; the JWKS fetched again when
        it lacks one, unless it was fetched within the last `refetch_interval`."""
        keys = await self._key_set()
        key = _pick(keys, kid, algorithm)
        if key is None:
            async with self._lock:
                held = self._keys
                if held is not None and held.value is not keys:  # fetched while we waited
                    key = _pick(held.value, kid, algorithm)
                elif time.monotonic() - self._keys_tried_at >= self._refetch_interval:
                    key = _pick(await self._fetch_keys(), kid, algorithm)
        if key is None:
            raise _refused(
                "it is signed by a key the issuer does not publish (unknown key id)",
                "oidc.unknown_key",
            )
        return key

    async def _key_set(self) -> list[Key]:
        """The issuer's keys as held, fetched when none are held or they are old; old keys
        serve on while the issuer cannot give new ones."""
        held = self._keys
        if held is not None and held.fresh(self._cache_seconds):
            return held.value
        async with self._lock:
            held = self._keys
            if held is not None and held.fresh(self._cache_seconds):
                return held.value
            try:
                return await self._fetch_keys()
            except UnavailableError as exc:
                if held is None:
                    raise
                log.warning("oidc.keys_kept", issuer=self.config.issuer, error=exc.message)
                return held.value

    async def _discovery_locked(self) -> OidcDiscovery:
        """The discovery document as held, fetched when none is held or it is old (called
        holding the lock); an old one serves on while the issuer cannot give a new one."""
        held = self._discovery
        if held is not None and held.fresh(self._cache_seconds):
            return held.value
        try:
            fetched = await self._fetch_discovery()
        except UnavailableError as exc:
            if held is None:
                raise
            log.warning("oidc.discovery_kept", issuer=self.config.issuer, error=exc.message)
            return held.value
        self._discovery = _Held(fetched, time.monotonic())
        return fetched

    async def _fetch_discovery(self) -> OidcDiscovery:
        issuer = self.config.issuer
        document = await self._get_json(issuer.rstrip("/") + WELL_KNOWN, "discovery document")
        if document.get("issuer") != issuer:
            raise self._remember(
                ConfigurationError(
                    f"the discovery document at {issuer.rstrip('/')}{WELL_KNOWN} names the issuer "
                    f"{document.get('issuer')!r}, not {issuer!r}: AGENTFLOW_OIDC_ISSUER must be "
                    "exactly the issuer's identifier"
                )
            )
        endpoints: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not value:
                raise self._unavailable(f"the issuer's discovery document has no {name}")
            endpoints[name] = value
        end_session = document.get("end_session_endpoint")
        announced = document.get("id_token_signing_alg_values_supported")
        algorithms = DEFAULT_ALGORITHMS | ASYMMETRIC_ALGORITHMS.intersection(
            announced if isinstance(announced, list) else []
        )
        return OidcDiscovery(
            issuer=issuer,
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            jwks_uri=endpoints["jwks_uri"],
            end_session_endpoint=end_session if isinstance(end_session, str) else None,
            algorithms=frozenset(algorithms),
        )

    async def _fetch_keys(self) -> list[Key]:
        """The issuer's signing keys, fetched now (called holding the lock)."""
        discovery = await self._discovery_locked()
        self._keys_tried_at = time.monotonic()
        document = await self._get_json(discovery.jwks_uri, "JWKS")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise self._unavailable("the issuer's JWKS has no list of keys")
        keys: list[Key] = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") not in SIGNING_KEY_TYPES:
                continue
            if entry.get("use", "sig") != "sig":
                continue
            try:
                keys.append(JWKRegistry.import_key(entry))
            except (JoseError, ValueError, TypeError) as exc:
                log.warning(
                    "oidc.key_skipped",
                    issuer=self.config.issuer,
                    kid=entry.get("kid"),
                    error=str(exc),
                )
        self._keys = _Held(keys, time.monotonic())
        log.info("oidc.keys_fetched", issuer=self.config.issuer, keys=len(keys))
        return keys

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        """A JSON object from the issuer; UnavailableError (remembered for `refetch_interval`)
        when it cannot be had."""
        if self._failure is not None and time.monotonic() < self._failure[0]:
            raise self._failure[1]
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise self._unavailable(
                        f"the issuer's {what} at {url} answered HTTP {response.status_code}"
                    )
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        too_large = f"is larger than {MAX_DOCUMENT_BYTES} bytes"
                        raise self._unavailable(f"the issuer's {what} at {url} {too_large}")
        except httpx2.TimeoutException:
            raise self._unavailable(
                f"the issuer's {what} at {url} did not answer in time"
            ) from None
        except httpx2.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise self._unavailable(
                f"cannot reach the issuer's {what} at {url}: {reason}"
            ) from None
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise self._unavailable(f"the issuer's {what} at {url} is not a JSON object")
        self._failure = None
        return document

    def _unavailable(self, message: str) -> UnavailableError:
        return self._remember(UnavailableError(f"OpenID Connect sign-in is unavailable: {message}"))

    def _remember(self, error: F) -> F:
        """`error`, remembered for `refetch_interval`: until then the issuer is left alone and
        every call that needs it fails the same way at once."""
        self._failure = (time.monotonic() + self._refetch_interval, error)
        log.warning("oidc.issuer_failed", issuer=self.config.issuer, error=error.message)
        return error


def _pick(keys: list[Key], kid: str | None, algorithm: str) -> Key | None:
    """The key named `kid` that can verify `algorithm`; without a kid, the one key that can
    (None when several could: which one signed is not said)."""
    fitting = [key for key in keys if (kid is None or key.kid == kid) and _fits(key, algorithm)]
    if kid is None and len(fitting) != 1:
        return None
    return fitting[0] if fitting else None


def _fits(key: Key, algorithm: str) -> bool:
    """Whether `key` may verify `algorithm`: its type, curve, `use` and `alg` allow it."""
    try:
        jws.JWSRegistry(algorithms=[algorithm]).get_alg(algorithm).check_key(key)
    except JoseError:
        return False
    return True
