"""The PEM files a TLS server is given, read and checked together.

`read_key_pair` reads a certificate chain and its private key and refuses, with a message that
names the setting, a file that is missing or not PEM, a key that does not belong to the
certificate, or a certificate outside its validity. Files are read whole each time: a rotation
that replaces them (atomically, by rename, as cert-manager and `agentflow dev` do) is picked up
by the next read, and a half-written pair fails the key check instead of being served.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agentflow_grpc.model.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class KeyPair:
    cert_pem: bytes  # the chain, leaf first
    key_pem: bytes
    not_after: dt.datetime
    subject: str


def file_stamp(*paths: Path | None) -> tuple[tuple[int, int, int], ...]:
    """What changes when any of `paths` is rewritten or replaced (inode, size, mtime)."""
    stamps = []
    for path in paths:
        if path is None:
            continue
        try:
            status = os.stat(path)
        except OSError:
            stamps.append((0, 0, 0))
            continue
        stamps.append((status.st_ino, status.st_size, status.st_mtime_ns))
    return tuple(stamps)


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def read_certificates(path: Path, setting: str) -> bytes:
    """The PEM certificates in `path` (a CA bundle or a chain), checked to parse."""
    data = _read(path, setting)
    try:
        if not x509.load_pem_x509_certificates(data):
            raise ValueError
    except ValueError:
        raise ConfigurationError(f"{setting}: {path} holds no PEM certificate") from None
    return data


def read_key_pair(
    cert_file: Path,
    key_file: Path,
    *,
    cert_setting: str,
    key_setting: str,
    now: dt.datetime | None = None,
) -> KeyPair:
    chain = read_certificates(cert_file, cert_setting)
    leaf = x509.load_pem_x509_certificates(chain)[0]
    key_pem = _read(key_file, key_setting)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{key_setting}: {key_file} is not an unencrypted PEM private key"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != leaf.public_key().public_bytes(serialization.Encoding.DER, public):
        raise ConfigurationError(
            f"{key_setting}: the key in {key_file} does not belong to the certificate in "
            f"{cert_file}"
        )
    now = now or dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise ConfigurationError(
            f"{cert_setting}: the certificate in {cert_file} is valid from "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now"
        )
    return KeyPair(chain, key_pem, leaf.not_valid_after_utc, leaf.subject.rfc4514_string())
