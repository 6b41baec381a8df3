"""OpenID Connect sign-in (identity/oidc.py) against a real OpenID Provider: the `oidc-provider`
npm package (tests/support/oidc.py), issuing real tokens, good and bad."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from support.network import closed_port
from support.oidc import (
    AUDIENCE,
    OTHER_AUDIENCE,
    PAGE_REDIRECT,
    PERSON_CLAIMS,
    ROLES,
    SERVICE_CLIENTS,
    OpenIdProvider,
    signing_key,
)

from agentflow_grpc.config import Settings
from agentflow_grpc.identity.oidc import WELL_KNOWN, OidcConfig, OidcVerifier
from agentflow_grpc.model.errors import (
    AgentFlowError,
    ConfigurationError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from agentflow_grpc.model.records import Role, SignIn

E = TypeVar("E", bound=AgentFlowError)


@asynccontextmanager
async def verifying(
    issuer: str, *, clock_skew: float = 30, tenant: str | None = None, **options: float
) -> AsyncIterator[OidcVerifier]:
    config = OidcConfig(
        issuer=issuer,
        audience=AUDIENCE,
        roles=ROLES,
        role_claim="groups",
        tenant_claim="tenant",
        tenant=tenant,
        clock_skew=clock_skew,
    )
    verifier = OidcVerifier(config, **options)
    try:
        yield verifier
    finally:
        await verifier.aclose()


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def refused(verifier: OidcVerifier, token: str, error: type[E], code: str) -> E:
    """The error `sign_in(token)` raises, checked for its class and code; its message never
    holds the token."""
    with pytest.raises(error) as caught:
        await verifier.sign_in(token)
    assert caught.value.code == code, caught.value.message
    assert not token or token not in caught.value.message
    return caught.value


async def jwks_fetches(provider: OpenIdProvider) -> int:
    return (await provider.request_counts()).get("/jwks", 0)


# --- tokens that sign in ---


async def test_a_service_token_signs_in_with_its_strongest_role_and_tenant(
    openid_provider: OpenIdProvider,
) -> None:
    token = await openid_provider.token("admin-service")
    async with verifying(openid_provider.issuer) as verifier:
        signin = await verifier.sign_in(token)
    claims = claims_of(token)
    assert signin == SignIn(
        issuer=openid_provider.issuer,
        subject="admin-service",
        tenant_name="acme",
        role=Role.ADMIN,  # af-viewers and af-admins: the stronger wins
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        token_id=claims["jti"],
    )
    assert signin.actor == f"oidc:{openid_provider.issuer}#admin-service"
    assert timedelta(minutes=5) < signin.expires_at - datetime.now(UTC) <= timedelta(minutes=10)


async def test_a_person_signed_in_by_the_page_flow_gets_their_groups_role(
    openid_provider: OpenIdProvider,
) -> None:
    """Authorization code with PKCE by the public page client, through the provider's login and
    consent forms: the access token is a JWT for AgentFlow's audience."""
    token = await openid_provider.sign_in("alice@example.com", redirect_uri=PAGE_REDIRECT)
    async with verifying(openid_provider.issuer) as verifier:
        signin = await verifier.sign_in(token)
    assert (signin.subject, signin.tenant_name, signin.role) == (
        "alice@example.com",
        PERSON_CLAIMS["tenant"],
        Role.RUNNER,
    )


async def test_a_string_role_claim_and_the_configured_tenant(
    openid_provider: OpenIdProvider,
) -> None:
    token = await openid_provider.token("viewer-service")
    async with verifying(openid_provider.issuer, tenant="initech") as verifier:
        signin = await verifier.sign_in(token)
    assert (signin.role, signin.tenant_name) == (Role.VIEWER, "initech")


async def test_an_es256_token_signs_in(tmp_path: Path) -> None:
    keys = [signing_key(algorithm="ES256"), signing_key()]  # ID tokens still need an RSA key
    with OpenIdProvider(
        tmp_path / "oidc", keys=keys, algorithm="ES256", service_clients=SERVICE_CLIENTS
    ) as provider:
        token = await provider.token("admin-service")
        async with verifying(provider.issuer) as verifier:
            signin = await verifier.sign_in(token)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")) == {
        "alg": "ES256",
        "typ": "at+jwt",
        "kid": keys[0]["kid"],
    }
    assert signin.role is Role.ADMIN


async def test_discovery_gives_the_issuers_endpoints(openid_provider: OpenIdProvider) -> None:
    async with verifying(openid_provider.issuer) as verifier:
        discovery = await verifier.discovery()
    issuer = openid_provider.issuer
    assert discovery.issuer == issuer
    assert discovery.authorization_endpoint == f"{issuer}/auth"
    assert discovery.token_endpoint == f"{issuer}/token"
    assert discovery.jwks_uri == f"{issuer}/jwks"
    assert discovery.end_session_endpoint == f"{issuer}/session/end"
    assert "RS256" in discovery.algorithms
    assert not {"none", "HS256"} & discovery.algorithms


# --- tokens refused ---


async def test_an_expired_token_is_refused_beyond_the_clock_skew(
    openid_provider: OpenIdProvider,
) -> None:
    fresh = claims_of(await openid_provider.token("admin-service"))
    lifetime = fresh["exp"] - fresh["iat"]
    # Issued by a clock that far back: expired 10 s ago, or an hour ago.
    lately = await openid_provider.token("admin-service", clock_offset=-(lifetime + 10))
    long_ago = await openid_provider.token("admin-service", clock_offset=-(lifetime + 3600))
    async with verifying(openid_provider.issuer, clock_skew=30) as verifier:
        assert (await verifier.sign_in(lately)).role is Role.ADMIN  # within the skew
        error = await refused(verifier, long_ago, UnauthenticatedError, "oidc.expired")
    assert "expired" in error.message
    async with verifying(openid_provider.issuer, clock_skew=0) as strict:
        await refused(strict, lately, UnauthenticatedError, "oidc.expired")


async def test_a_token_from_the_future_is_not_yet_valid(openid_provider: OpenIdProvider) -> None:
    soon = await openid_provider.token("admin-service", clock_offset=10)
    later = await openid_provider.token("admin-service", clock_offset=3600)
    async with verifying(openid_provider.issuer, clock_skew=30) as verifier:
        assert (await verifier.sign_in(soon)).role is Role.ADMIN  # within the skew
        error = await refused(verifier, later, UnauthenticatedError, "oidc.not_yet_valid")
    assert "not yet valid" in error.message


async def test_a_token_for_another_audience_is_refused(openid_provider: OpenIdProvider) -> None:
    token = await openid_provider.token("admin-service", resource=OTHER_AUDIENCE)
    assert claims_of(token)["aud"] == OTHER_AUDIENCE
    async with verifying(openid_provider.issuer) as verifier:
        error = await refused(verifier, token, UnauthenticatedError, "oidc.wrong_audience")
    assert "another audience" in error.message


async def test_a_token_from_another_issuer_is_refused_without_fetching_keys(
    openid_provider: OpenIdProvider, other_issuer: OpenIdProvider
) -> None:
    token = await other_issuer.token("admin-service")
    before = await jwks_fetches(openid_provider)
    async with verifying(openid_provider.issuer) as verifier:
        error = await refused(verifier, token, UnauthenticatedError, "oidc.wrong_issuer")
    assert "another issuer" in error.message
    assert await jwks_fetches(openid_provider) == before


async def test_a_token_signed_by_a_key_the_issuer_does_not_publish_is_refused(
    openid_provider: OpenIdProvider, impostor: OpenIdProvider
) -> None:
    token = await impostor.token("admin-service")
    assert claims_of(token)["iss"] == openid_provider.issuer
    async with verifying(openid_provider.issuer) as verifier:
        error = await refused(verifier, token, UnauthenticatedError, "oidc.unknown_key")
    assert "unknown key" in error.message


async def test_a_token_whose_claims_were_changed_has_a_bad_signature(
    openid_provider: OpenIdProvider,
) -> None:
    header, _, signature = (await openid_provider.token("stranger-service")).split(".")
    claims = claims_of(await openid_provider.token("stranger-service"))
    claims["groups"] = ["af-admins"]
    tampered = f"{header}.{b64(json.dumps(claims))}.{signature}"
    async with verifying(openid_provider.issuer) as verifier:
        error = await refused(verifier, tampered, UnauthenticatedError, "oidc.bad_signature")
    assert "signature" in error.message


async def test_unsigned_and_hmac_tokens_are_refused(openid_provider: OpenIdProvider) -> None:
    """`none`, and HS256 keyed with the issuer's public key (the algorithm-confusion attack,
    made by hand: joserfc itself refuses a public key as an HMAC secret)."""
    claims = claims_of(await openid_provider.token("admin-service"))
    public_key = RSAKey.import_key(openid_provider.public_keys()[0])
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'kid': public_key.kid}))}.{b64(json.dumps(claims))}"
    )
    mac = hmac.digest(public_key.as_pem(private=False), signing_input.encode(), "sha256")
    confused = f"{signing_input}.{b64(mac)}"
    no_signature = f"{b64(json.dumps({'alg': 'none'}))}.{b64(json.dumps(claims))}."
    async with verifying(openid_provider.issuer) as verifier:
        for token in (confused, no_signature):
            await refused(verifier, token, UnauthenticatedError, "oidc.algorithm")


def unsigned(header: dict[str, Any], payload: str) -> str:
    """A compact JWS of `header` and `payload` with a signature of junk."""
    return f"{b64(json.dumps(header))}.{b64(payload)}.c2ln"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        unsigned({"alg": "RS256"}, "not json"),
        unsigned({"alg": "RS256"}, "[1, 2]"),
        unsigned({"alg": ["RS256"]}, "{}"),
        unsigned({"alg": "RS256", "typ": "logout+jwt"}, "{}"),
        "x" * 20_000,
    ],
    ids=[
        "empty",
        "one-part",
        "not-base64-json",
        "payload-not-json",
        "payload-not-an-object",
        "algorithm-not-a-name",
        "not-an-access-token",
        "too-long",
    ],
)
async def test_malformed_tokens_are_refused(openid_provider: OpenIdProvider, token: str) -> None:
    async with verifying(openid_provider.issuer) as verifier:
        error = await refused(verifier, token, UnauthenticatedError, "oidc.malformed")
    assert "malformed" in error.message


async def test_groups_that_map_to_no_role_are_denied(openid_provider: OpenIdProvider) -> None:
    token = await openid_provider.token("stranger-service")
    async with verifying(openid_provider.issuer) as verifier:
        error = await refused(verifier, token, PermissionDeniedError, "oidc.no_role")
    assert "your groups map to no role" in error.message


async def test_a_token_without_a_tenant_is_denied_unless_one_is_configured(
    openid_provider: OpenIdProvider,
) -> None:
    no_claim = await openid_provider.token("viewer-service")
    odd_claim = await openid_provider.token("odd-tenant-service")
    async with verifying(openid_provider.issuer) as verifier:
        error = await refused(verifier, no_claim, PermissionDeniedError, "oidc.no_tenant")
        assert "names no tenant" in error.message
    async with verifying(openid_provider.issuer, tenant="initech") as verifier:
        assert (await verifier.sign_in(no_claim)).tenant_name == "initech"
        # A tenant claim that is there but names no one tenant is not overridden.
        await refused(verifier, odd_claim, PermissionDeniedError, "oidc.no_tenant")


# --- the issuer: its document, its keys, its absence ---


async def test_a_discovery_document_naming_another_issuer_is_a_configuration_error(
    openid_provider: OpenIdProvider,
) -> None:
    """Configured with a trailing slash, the issuer's document (same URL) names it without."""
    token = await openid_provider.token("admin-service")
    discovered = (await openid_provider.request_counts())[WELL_KNOWN]
    async with verifying(openid_provider.issuer + "/", refetch_interval=60) as verifier:
        for _ in range(3):
            with pytest.raises(ConfigurationError) as caught:
                await verifier.sign_in(token)
            assert f"names the issuer {openid_provider.issuer!r}" in caught.value.message
    # Remembered: the issuer was asked once.
    assert (await openid_provider.request_counts())[WELL_KNOWN] == discovered + 1


def forged_with_made_up_kids(claims: dict[str, Any], count: int) -> list[str]:
    """Tokens with `claims`, each signed by a key of its own under a random kid."""
    key = RSAKey.import_key(signing_key())
    return [
        jwt.encode({"alg": "RS256", "kid": secrets.token_hex(8)}, claims, key) for _ in range(count)
    ]


async def test_made_up_key_ids_fetch_the_jwks_at_most_once_per_interval(
    openid_provider: OpenIdProvider,
) -> None:
    valid = await openid_provider.token("admin-service")
    forged = forged_with_made_up_kids(claims_of(valid), 20)
    async with verifying(openid_provider.issuer, refetch_interval=60) as verifier:
        await verifier.sign_in(valid)
        fetched = await jwks_fetches(openid_provider)
        for token in forged:
            await refused(verifier, token, UnauthenticatedError, "oidc.unknown_key")
        assert await jwks_fetches(openid_provider) == fetched  # fetched just now: not again
    async with verifying(openid_provider.issuer, refetch_interval=0.3) as verifier:
        await verifier.sign_in(valid)
        fetched = await jwks_fetches(openid_provider)
        await asyncio.sleep(0.4)
        results = await asyncio.gather(
            *(verifier.sign_in(token) for token in forged), return_exceptions=True
        )
        assert all(getattr(result, "code", None) == "oidc.unknown_key" for result in results)
        assert await jwks_fetches(openid_provider) == fetched + 1  # one refetch for all


@pytest.mark.slow
async def test_rotated_keys_are_fetched_and_held_keys_outlive_the_issuer(tmp_path: Path) -> None:
    old_key, new_key = signing_key("key-2024"), signing_key("key-2025")
    provider = OpenIdProvider(tmp_path / "oidc", keys=[old_key], service_clients=SERVICE_CLIENTS)
    with provider:
        async with verifying(provider.issuer, refetch_interval=0.2) as verifier:
            old_token = await provider.token("admin-service")
            assert (await verifier.sign_in(old_token)).role is Role.ADMIN

            # The new key signs; the old one is still published.
            provider.restart(keys=[new_key, old_key])
            new_token = await provider.token("admin-service")
            assert (await verifier.sign_in(new_token)).role is Role.ADMIN  # kid unknown: refetched
            assert await jwks_fetches(provider) == 1
            assert (await verifier.sign_in(old_token)).role is Role.ADMIN

            # The old key is dropped: a verifier that reads the JWKS now refuses its tokens.
            provider.restart(keys=[new_key])
            async with verifying(provider.issuer) as fresh:
                assert (await fresh.sign_in(new_token)).role is Role.ADMIN
                await refused(fresh, old_token, UnauthenticatedError, "oidc.unknown_key")

            # The issuer goes away: keys held still verify; a key not held cannot be checked.
            provider.stop()
            assert (await verifier.sign_in(new_token)).role is Role.ADMIN
            [forged] = forged_with_made_up_kids(claims_of(new_token), 1)
            await asyncio.sleep(0.2)
            with pytest.raises(UnavailableError):
                await verifier.sign_in(forged)


async def test_an_issuer_that_cannot_be_reached_is_unavailable(
    openid_provider: OpenIdProvider,
) -> None:
    token = await openid_provider.token("admin-service")
    issuer = f"http://127.0.0.1:{closed_port()}"
    async with verifying(issuer, refetch_interval=60) as verifier:
        with pytest.raises(UnavailableError) as caught:
            await verifier.sign_in(token)
        assert issuer in caught.value.message
        assert token not in caught.value.message
        # Remembered: the next call fails at once, without trying the issuer again.
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            await verifier.discovery()
        assert time.monotonic() - started < 0.05


# --- the settings ---


def test_settings_without_an_issuer_configure_no_sign_in() -> None:
    assert OidcConfig.from_settings(Settings(oidc_issuer=None)) is None


def test_settings_map_roles_and_claims() -> None:
    settings = Settings(
        oidc_issuer="https://login.example.com/",
        oidc_audience="agentflow",
        oidc_roles={"admins": "admin", "staff": "viewer"},
        oidc_role_claim="roles",
        oidc_tenant_claim=None,
        oidc_tenant="acme",
        oidc_clock_skew=5,
    )
    assert OidcConfig.from_settings(settings) == OidcConfig(
        issuer="https://login.example.com/",
        audience="agentflow",
        roles={"admins": Role.ADMIN, "staff": Role.VIEWER},
        role_claim="roles",
        tenant_claim=None,
        tenant="acme",
        clock_skew=5,
    )


def test_settings_with_an_issuer_but_no_audience_roles_or_tenant_are_refused() -> None:
    settings = Settings(
        oidc_issuer="https://login.example.com",
        oidc_audience=None,
        oidc_roles={},
        oidc_tenant_claim=None,
        oidc_tenant=None,
    )
    with pytest.raises(ConfigurationError) as caught:
        OidcConfig.from_settings(settings)
    assert caught.value.message == (
        "AGENTFLOW_OIDC_ISSUER is set, so sign-in also needs AGENTFLOW_OIDC_AUDIENCE, "
        "AGENTFLOW_OIDC_ROLES, AGENTFLOW_OIDC_TENANT_CLAIM or AGENTFLOW_OIDC_TENANT"
    )
