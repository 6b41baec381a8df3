"""A real OpenID Provider for the tests: the certified `oidc-provider` npm package, run by
tests/support/oidc_provider/provider.js with the machine's Node.js on 127.0.0.1, at a port
picked at run time (`make oidc-provider` installs Node.js and the package).

`OpenIdProvider(directory, ...)` is one provider process: `start()` runs it and waits until its
discovery document answers, `stop()` ends it, `restart(keys=..., redirect_uris=...)` runs it
again on the same port under the same issuer (rotated keys, the page's redirect URIs). What it
issues:

- `token(client_id)`: an access token (a JWT for `audience`, signed by the first key for the
  provider's algorithm) that a service client gets for itself (client_credentials); the
  client's claims are in it (e.g. `{"groups": [...], "tenant": "acme"}`). `resource=` asks
  for another audience; `clock_offset=` (seconds) has the provider issue it as if its clock
  were that far off, so a token can be born expired (-3600) or in the future (+3600).
- `sign_in(login, redirect_uri)`: the page's flow without a browser: authorization code with
  PKCE through the provider's development login and consent forms (any login, any password),
  the code exchanged by the public client `PAGE_CLIENT`; the person's access token, carrying
  `users[login]` (or `users["*"]`) as claims. A browser test fills the same forms: the login
  form's fields are `login` and `password` (button "Sign-in"), then the consent form's button
  "Continue".
- A second provider with another issuer is a token from a wrong issuer; one started with
  `issuer=` another's issuer and keys of its own signs tokens with a key that issuer does not
  publish (an unknown kid).

`request_counts()` tells how many requests each path has served (JWKS fetches). Keys are
private JWKs made by `signing_key()`; the first of a provider's keys for its algorithm signs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from joserfc.jwk import ECKey, JWKRegistry, KeyParameters, RSAKey

from agentflow_grpc.model.records import Role

PROGRAM_DIR = Path(__file__).resolve().parent / "oidc_provider"
INSTALL_HINT = "`make oidc-provider` installs Node.js and the oidc-provider package"
AUDIENCE = "https://agentflow.test/api"
OTHER_AUDIENCE = "https://other.test/api"
PAGE_CLIENT = "agentflow-page"
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')

# The tests' usual set-up: the groups AgentFlow maps to roles (AGENTFLOW_OIDC_ROLES), service
# clients whose tokens carry groups and a tenant (claim `tenant`), and the claims of every
# person who signs in through the page.
ROLES = {
    "af-admins": Role.ADMIN,
    "af-editors": Role.EDITOR,
    "af-runners": Role.RUNNER,
    "af-viewers": Role.VIEWER,
}
SERVICE_CLIENTS: dict[str, dict[str, Any]] = {
    "admin-service": {"groups": ["af-viewers", "af-admins"], "tenant": "acme"},
    "viewer-service": {"groups": "af-viewers"},  # a string claim, and no tenant claim
    "stranger-service": {"groups": ["marketing", "sales"], "tenant": "acme"},  # no role
    "odd-tenant-service": {"groups": ["af-editors"], "tenant": ["acme", "globex"]},
}
PERSON_CLAIMS: dict[str, Any] = {"groups": ["af-runners"], "tenant": "acme"}
# A redirect URI for the page client when no page is there: `sign_in` stops at the redirect.
PAGE_REDIRECT = "http://127.0.0.1:9/signed-in"


def signing_key(kid: str | None = None, algorithm: str = "RS256") -> dict[str, Any]:
    """A fresh private JWK for `algorithm` (RS256: RSA, 2048 bits; ES256: EC, P-256)."""
    parameters: KeyParameters = {"kid": kid or secrets.token_hex(8), "use": "sig", "alg": algorithm}
    if algorithm == "ES256":
        key: RSAKey | ECKey = ECKey.generate_key("P-256", parameters, private=True)
    else:
        key = RSAKey.generate_key(2048, parameters, private=True)
    return dict(key.as_dict(private=True))


class OpenIdProvider:
    """One oidc-provider process, configured from the arguments; a context manager."""

    def __init__(
        self,
        directory: Path,
        *,
        issuer: str | None = None,
        keys: Sequence[Mapping[str, Any]] | None = None,
        audience: str = AUDIENCE,
        other_audiences: Sequence[str] = (OTHER_AUDIENCE,),
        service_clients: Mapping[str, Mapping[str, Any]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        redirect_uris: Sequence[str] = (),
        algorithm: str = "RS256",
    ) -> None:
        """`issuer`: None for http://127.0.0.1:<port>. `service_clients`: client id -> the
        claims its tokens carry. `users`: login -> the claims of that person's tokens (`*`: any
        other login). `redirect_uris`: the page client's (none: no page client). `algorithm`:
        what access tokens are signed with, by the first of `keys` for it (RS256 needs an RSA
        key among them in any case: ID tokens use it)."""
        self.directory = directory
        self.audience = audience
        self.keys = [dict(key) for key in keys] if keys is not None else [signing_key()]
        self._issuer = issuer
        self._other_audiences = list(other_audiences)
        self._service_clients = {
            client_id: (secrets.token_urlsafe(24), dict(claims))
            for client_id, claims in (service_clients or {}).items()
        }
        self._users = {login: dict(claims) for login, claims in (users or {}).items()}
        self._redirect_uris = list(redirect_uris)
        self._algorithm = algorithm
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        if self._issuer is None:
            raise RuntimeError("the OpenID Provider has not started")
        return self._issuer

    @property
    def url(self) -> str:
        """Where it listens (its issuer, unless it was started with another's)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "provider.log"

    def public_keys(self) -> list[dict[str, Any]]:
        """Its keys as published in its JWKS."""
        return [dict(JWKRegistry.import_key(key).as_dict(private=False)) for key in self.keys]

    def start(self, timeout: float = 30.0) -> str:
        """Run the provider and wait until its discovery document answers; its issuer."""
        node = shutil.which("node")
        if node is None or not (PROGRAM_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(f"the OpenID Provider cannot run: {INSTALL_HINT}")
        self.directory.mkdir(parents=True, exist_ok=True)
        ready = self.directory / "ready.json"
        ready.unlink(missing_ok=True)
        config = self.directory / "config.json"
        config.write_text(json.dumps(self._config(ready)), encoding="utf-8")
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [node, str(PROGRAM_DIR / "provider.js"), str(config)],
                cwd=PROGRAM_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_ready(ready, timeout)
        except BaseException:
            self.stop()
            raise
        return self.issuer

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(
        self,
        *,
        keys: Sequence[Mapping[str, Any]] | None = None,
        redirect_uris: Sequence[str] | None = None,
    ) -> None:
        """Stop and start again on the same port under the same issuer, with new keys (the
        first one signs; keep an old one in the list to keep publishing it) or redirect URIs.
        Whatever it held (sessions, grants) is gone."""
        if keys is not None:
            self.keys = [dict(key) for key in keys]
        if redirect_uris is not None:
            self._redirect_uris = list(redirect_uris)
        self.stop()
        self.start()

    def __enter__(self) -> OpenIdProvider:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- tokens ---

    async def token(
        self, client_id: str, *, resource: str | None = None, clock_offset: float = 0
    ) -> str:
        """An access token service client `client_id` gets for itself (client_credentials)
        for `resource` (default: the audience), issued `clock_offset` seconds off."""
        secret, _ = self._service_clients[client_id]
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            response = await http.post(
                "/token",
                auth=(client_id, secret),
                data={"grant_type": "client_credentials", "resource": resource or self.audience},
                headers={"x-clock-offset": str(clock_offset)},
            )
        return _access_token(response)

    async def sign_in(self, login: str, *, redirect_uri: str) -> str:
        """The access token the page's authorization-code flow with PKCE gets for `login`,
        through the provider's development login and consent forms (no browser)."""
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        state = secrets.token_urlsafe(16)
        query = {
            "client_id": PAGE_CLIENT,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": "openid",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": self.audience,
        }
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            response = await http.get("/auth", params=query)
            forms = {"login": {"login": login, "password": "any"}, "consent": {}}
            while not response.headers.get("location", "").startswith(redirect_uri):
                if response.is_redirect:
                    response = await http.get(urljoin(self.url, response.headers["location"]))
                    continue
                action = _FORM_ACTION.search(response.text)
                prompt = re.search(r'name="prompt" value="(\w+)"', response.text)
                if response.status_code != 200 or action is None or prompt is None:
                    raise RuntimeError(f"unexpected page from the provider: {response.text[:500]}")
                fields = {"prompt": prompt.group(1), **forms[prompt.group(1)]}
                response = await http.post(action.group(1), data=fields)
            answer = parse_qs(urlsplit(response.headers["location"]).query)
            if answer.get("state") != [state] or "code" not in answer:
                raise RuntimeError(f"the provider answered {answer}")
            response = await http.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "client_id": PAGE_CLIENT,
                    "code": answer["code"][0],
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                },
            )
        return _access_token(response)

    async def request_counts(self) -> dict[str, int]:
        """How many requests each path has served since the process started."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            response = await http.get("/test/requests")
            response.raise_for_status()
            counts: dict[str, int] = response.json()
            return counts

    # --- the process ---

    def _config(self, ready: Path) -> dict[str, Any]:
        clients: list[dict[str, Any]] = [
            {
                "client_id": client_id,
                "client_secret": secret,
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "token_claims": claims,
            }
            for client_id, (secret, claims) in self._service_clients.items()
        ]
        if self._redirect_uris:
            clients.append(
                {
                    "client_id": PAGE_CLIENT,
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "redirect_uris": self._redirect_uris,
                    "post_logout_redirect_uris": self._redirect_uris,
                }
            )
        return {
            "issuer": self._issuer,
            "port": self._port,
            "readyFile": str(ready),
            "keys": self.keys,
            "audience": self.audience,
            "algorithm": self._algorithm,
            "resources": self._other_audiences,
            "clients": clients,
            "users": self._users,
        }

    def _wait_until_ready(self, ready: Path, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self._process.poll() is not None:
                raise RuntimeError(f"the OpenID Provider exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OpenID Provider did not start: {self._log_tail()}")
            time.sleep(0.05)
        started = json.loads(ready.read_text(encoding="utf-8"))
        self._port, self._issuer = started["port"], started["issuer"]
        response = httpx.get(f"{self.url}/.well-known/openid-configuration", timeout=timeout)
        response.raise_for_status()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def _access_token(response: httpx.Response) -> str:
    if response.status_code != 200:
        raise RuntimeError(f"the token endpoint answered {response.status_code}: {response.text}")
    token: str = response.json()["access_token"]
    return token
