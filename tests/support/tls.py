"""A throw-away certificate authority and a certificate for 127.0.0.1 and localhost it signed,
for servers the tests run over https (the fake Microsoft identity platform: azure-identity takes
no authority but an https one). Clients trust it through their own options, given `ca_pem`;
nothing disables verification. Made by the product's own authority (tls/authority.py).
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agentflow_grpc.tls.authority import CertificateAuthority


@dataclass(frozen=True)
class LocalTls:
    ca_pem: str  # the authority's certificate, PEM: what a client is told to trust
    cert_pem: bytes  # the server's certificate, PEM
    key_pem: bytes  # its private key, PEM

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as directory:  # load_cert_chain reads files only
            cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
            cert.write_bytes(self.cert_pem)
            key.write_bytes(self.key_pem)
            context.load_cert_chain(cert, key)
        return context


def local_tls() -> LocalTls:
    ca = CertificateAuthority.create("AgentFlow test CA", valid_for=dt.timedelta(days=1))
    server = ca.issue_server(["localhost", "127.0.0.1"], valid_for=dt.timedelta(days=1))
    return LocalTls(ca_pem=ca.cert_pem.decode(), cert_pem=server.cert_pem, key_pem=server.key_pem)
