"""The OpenID Providers of the tests (tests/support/oidc.py), one each for the session; a pytest
plugin, loaded by tests/conftest.py:

- `openid_provider`: the issuer AgentFlow trusts, with the service clients of
  `SERVICE_CLIENTS`, and the page's public client (redirected to `PAGE_REDIRECT`) for people,
  whose tokens carry `PERSON_CLAIMS`.
- `other_issuer`: another issuer with the same clients (tokens from a wrong issuer).
- `impostor`: claims `openid_provider`'s issuer but signs with a key of its own, which that
  issuer does not publish (an unknown key id).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentflow_grpc.config import Settings
from support.api_fixtures import api_settings
from support.oidc import (
    AUDIENCE,
    PAGE_CLIENT,
    PAGE_REDIRECT,
    PERSON_CLAIMS,
    ROLES,
    SERVICE_CLIENTS,
    OpenIdProvider,
)


def oidc_api_settings(dsn: str, redis_url: str, provider: OpenIdProvider) -> Settings:
    """A server's settings that trust `provider`: the tests' roles, tenant from the `tenant`
    claim else `acme`, the page client, 5 s of clock skew."""
    return api_settings(
        dsn,
        redis_url,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_client_id=PAGE_CLIENT,
        oidc_roles={group: role.value for group, role in ROLES.items()},
        oidc_tenant_claim="tenant",
        oidc_tenant="acme",
        oidc_clock_skew=5,
    )


def _provider(
    directory_name: str, factory: pytest.TempPathFactory, issuer: str | None = None
) -> OpenIdProvider:
    return OpenIdProvider(
        factory.mktemp(directory_name),
        issuer=issuer,
        service_clients=SERVICE_CLIENTS,
        users={"*": PERSON_CLAIMS},
        redirect_uris=[PAGE_REDIRECT],
    )


@pytest.fixture(scope="session")
def openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    with _provider("oidc", tmp_path_factory) as provider:
        yield provider


@pytest.fixture(scope="session")
def other_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    with _provider("oidc-other", tmp_path_factory) as provider:
        yield provider


@pytest.fixture(scope="session")
def impostor(
    tmp_path_factory: pytest.TempPathFactory, openid_provider: OpenIdProvider
) -> Iterator[OpenIdProvider]:
    with _provider("oidc-impostor", tmp_path_factory, openid_provider.issuer) as provider:
        yield provider
