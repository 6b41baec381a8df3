"""The gRPC server's TLS: its certificate and key, and (mutual TLS) the authorities whose client
certificates it accepts, reloaded without a restart.

gRPC asks `ReloadingServerTls` at each new connection's handshake whether the files changed
(one `stat` per file). When they did, the pair is read and checked again (tls/files.py): a good
pair serves every later handshake, connections already open keep theirs (streams go on); a bad
one (half written, a key of another certificate, expired) is logged and the pair in use stays.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agentflow_grpc.config import Settings
from agentflow_grpc.model.errors import ConfigurationError
from agentflow_grpc.observability.logging import get_logger
from agentflow_grpc.tls.files import file_stamp, read_certificates, read_key_pair

log = get_logger("agentflow.api.tls")

CERT_SETTING = "AGENTFLOW_TLS_CERT_FILE"
KEY_SETTING = "AGENTFLOW_TLS_KEY_FILE"
CLIENT_CA_SETTING = "AGENTFLOW_TLS_CLIENT_CA_FILE"


@dataclass
class ReloadingServerTls:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None  # set: client certificates signed by these are required
    _stamp: tuple[tuple[int, int, int], ...] = field(default=(), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for `add_secure_port`; ConfigurationError if the files are not usable."""
        initial = self._configuration()
        return grpc.dynamic_ssl_server_credentials(
            initial,
            self._fetch,  # type: ignore[arg-type]  # the stub misses gRPC's "None: no change"
            require_client_authentication=self.client_ca_file is not None,
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        stamp = file_stamp(self.cert_file, self.key_file, self.client_ca_file)
        pair = read_key_pair(
            self.cert_file, self.key_file, cert_setting=CERT_SETTING, key_setting=KEY_SETTING
        )
        roots = (
            None
            if self.client_ca_file is None
            else read_certificates(self.client_ca_file, CLIENT_CA_SETTING)
        )
        self._stamp = stamp
        log.info("tls.certificate_loaded", subject=pair.subject, not_after=str(pair.not_after))
        return grpc.ssl_server_certificate_configuration(
            [(pair.key_pem, pair.cert_pem)], root_certificates=roots
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question at each handshake: a new configuration, or None to keep the one."""
        with self._lock:
            stamp = file_stamp(self.cert_file, self.key_file, self.client_ca_file)
            if stamp == self._stamp:
                return None
            try:
                return self._configuration()
            except ConfigurationError as exc:
                self._stamp = stamp  # not again until the files change once more
                log.error("tls.reload_failed", reason=exc.message)
                return None


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a wildcard such as 0.0.0.0 is not an address; any other name may be public


def server_tls(settings: Settings, host: str) -> ReloadingServerTls | None:
    """The server's TLS from the settings; None (plain text) only on loopback, or where
    AGENTFLOW_ALLOW_PLAINTEXT says so (logged as a warning): API keys, tokens, prompts and
    outputs would cross the network readable."""
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        return ReloadingServerTls(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        )
    if is_loopback(host):
        return None
    if not settings.allow_plaintext:
        raise ConfigurationError(
            f"the gRPC server would listen on {host} without TLS: set {CERT_SETTING} and "
            f"{KEY_SETTING} (docs/tls.md), or allow plain text on purpose with "
            "AGENTFLOW_ALLOW_PLAINTEXT=true (--allow-plaintext)"
        )
    log.warning(
        "server.plaintext",
        host=host,
        hint="calls, API keys and outputs cross the network unencrypted; set TLS_CERT_FILE",
    )
    return None
