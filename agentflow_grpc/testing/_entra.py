"""A fake Microsoft identity platform (Microsoft Entra ID's v2.0 endpoints), and Azure OpenAI's
check of the credential a request carries.

:class:`FakeEntra` issues access tokens to the applications registered with it
(:meth:`FakeEntra.register_app`), by the OAuth 2.0 client credentials grant, as
``login.microsoftonline.com`` does:

- ``POST /{tenant}/oauth2/v2.0/token``, a form (``application/x-www-form-urlencoded``) with
  ``grant_type=client_credentials``, ``client_id``, ``client_secret`` and one ``scope`` ending in
  ``/.default`` (the resource's application ID URI); the answer
  ``{"token_type": "Bearer", "expires_in", "ext_expires_in", "access_token"}``, or an error in the
  platform's shape ``{"error", "error_description": "AADSTS…: …", "error_codes", "timestamp",
  "trace_id", "correlation_id", "error_uri"}`` with its status: 401 ``invalid_client`` for a wrong
  or missing secret (AADSTS7000215, AADSTS7000218), 400 for an unknown tenant (AADSTS90002), an
  unknown application (AADSTS700016), a scope that is not ``…/.default`` (AADSTS1002012) or
  another grant (AADSTS70003).
- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: the OpenID Connect discovery document
  MSAL reads (its endpoints on the fake's own origin).

azure-identity refuses an authority that is not https, so tests serve these routes over TLS
(``FakeProviderServer(provider, ssl_context=…)``, the same :class:`FakeProvider` as the plain
listener: a token issued on one is good on the other).

Azure OpenAI's paths (``/openai/…``) take ``?api-version=`` and either an ``api-key`` header (any
key) or ``Authorization: Bearer <token>`` with a live token this fake issued for the
``https://cognitiveservices.azure.com`` audience (:func:`FakeEntra.azure_auth_error`); otherwise
they answer 401 in Azure's shape, ``{"error": {"code": "401", "message": …}}``, with Azure's
messages.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"  # Azure OpenAI's token audience
TOKEN_LIFETIME = 3599  # seconds, as the platform's tokens for a service principal
_ENTRA_PATH = re.compile(r"^/[^/]+/(oauth2/v2\.0/token|v2\.0/\.well-known/openid-configuration)$")
_NO_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
_BAD_TOKEN = (
    f"Unauthorized. Access token is missing, invalid, audience is incorrect ({COGNITIVE_SERVICES}),"
    " or have expired."
)


@dataclass(frozen=True)
class IssuedToken:
    tenant_id: str
    client_id: str
    audience: str  # the scope asked for, without `/.default`
    expires_at: float  # time.time()

    @property
    def expired(self) -> bool:
        return self.expires_at <= time.time()


@dataclass(frozen=True)
class TokenRequest:
    """A request the token endpoint received (its form fields, the secret included)."""

    tenant_id: str
    form: dict[str, str]


class FakeEntra:
    """The fake identity platform's state: applications, issued tokens, token requests;
    thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._apps: dict[tuple[str, str], str] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._issued: list[str] = []
        self._requests: list[TokenRequest] = []

    def register_app(self, tenant_id: str, client_id: str, client_secret: str) -> None:
        """An application (service principal) of ``tenant_id`` with that client secret."""
        with self._lock:
            self._apps[(tenant_id, client_id)] = client_secret

    @property
    def issued(self) -> list[str]:
        """The access tokens issued, oldest first."""
        with self._lock:
            return list(self._issued)

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget applications, tokens and token requests."""
        with self._lock:
            self._apps.clear()
            self._tokens.clear()
            self._issued.clear()
            self._requests.clear()

    @staticmethod
    def serves(path: str) -> bool:
        """Whether ``path`` is one of the identity platform's (its bodies are forms, not JSON)."""
        return _ENTRA_PATH.match(path) is not None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get(
            "/{tenant}/v2.0/.well-known/openid-configuration", self._openid_configuration
        )

    def azure_auth_error(self, request: web.Request) -> web.Response | None:
        """Azure OpenAI's answer to a request on its paths without a good credential; None when
        the request may go on."""
        if not request.query.get("api-version"):
            return _azure_error(401, "Azure OpenAI requests need ?api-version= and a credential.")
        if request.headers.get("api-key"):
            return None
        authorization = request.headers.get("Authorization", "")
        if not authorization:
            return _azure_error(401, _NO_KEY)
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            issued = self._tokens.get(token) if scheme.lower() == "bearer" else None
        if issued is None or issued.audience != COGNITIVE_SERVICES or issued.expired:
            return _azure_error(401, _BAD_TOKEN)
        return None

    async def _token(self, request: web.Request) -> web.StreamResponse:
        tenant = request.match_info["tenant"]
        form = {key: str(value) for key, value in (await request.post()).items()}
        with self._lock:
            self._requests.append(TokenRequest(tenant, form))
            tenants = {known for known, _ in self._apps}
            secret = self._apps.get((tenant, form.get("client_id", "")))
        client_id = form.get("client_id", "")
        if form.get("grant_type") != "client_credentials":
            return _entra_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.",
            )
        if tenant not in tenants:
            return _entra_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        if secret is None:
            return _entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'.",
            )
        given = form.get("client_secret")
        if not given:
            return _entra_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        if not secrets.compare_digest(given, secret):
            return _entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
        scope = form.get("scope", "")
        if " " in scope.strip() or not scope.endswith("/.default"):
            return _entra_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must "
                "have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        audience = scope.removesuffix("/.default")
        now = time.time()
        token = _access_token(tenant, client_id, audience, now)
        with self._lock:
            self._tokens[token] = IssuedToken(tenant, client_id, audience, now + TOKEN_LIFETIME)
            self._issued.append(token)
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            }
        )

    async def _openid_configuration(self, request: web.Request) -> web.StreamResponse:
        tenant = request.match_info["tenant"]
        base = f"{request.url.origin()}/{tenant}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{request.url.origin()}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid"],
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": None,
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _access_token(tenant: str, client_id: str, audience: str, now: float) -> str:
    """A JWT-shaped access token (its signature random: only this fake checks it, by lookup)."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "fake-entra"}
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + TOKEN_LIFETIME,
        "appid": client_id,
        "oid": str(uuid.uuid4()),
        "sub": client_id,
        "tid": tenant,
        "ver": "1.0",
    }
    return ".".join(
        (
            _b64(json.dumps(header).encode()),
            _b64(json.dumps(claims).encode()),
            _b64(secrets.token_bytes(32)),
        )
    )


def _entra_error(status: int, error: str, code: int, description: str) -> web.Response:
    """An error of the identity platform's token endpoint, in its own shape."""
    trace_id, correlation_id = uuid.uuid4(), uuid.uuid4()
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": str(trace_id),
            "correlation_id": str(correlation_id),
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
        status=status,
    )


def _azure_error(status: int, message: str) -> web.Response:
    """An Azure OpenAI error, in Azure's shape."""
    return web.json_response({"error": {"code": str(status), "message": message}}, status=status)
