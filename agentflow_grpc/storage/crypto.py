"""Source secrets at rest: AES-256-GCM envelope encryption with a rotatable keyring.

Keys (key-encryption keys, KEKs) come from the environment variable AGENTFLOW_SECRET_KEYS::

    AGENTFLOW_SECRET_KEYS="2024-01:BASE64KEY,2024-07:BASE64KEY2"

- entries are separated by commas; whitespace around an entry (and around its colon) is ignored;
- each entry is ``ID:KEY``; the id matches ``[A-Za-z0-9._-]{1,64}`` and is unique in the list;
- the key is standard base64 with its padding and decodes to exactly 32 bytes
  (``Keyring.generate_key()`` makes one);
- the NEWEST key is LAST: new secrets are always sealed under it.

Rotation without downtime: append a new key at the end and deploy (old rows still open, since
any key in the ring can open what it sealed), re-seal every row whose ``key_id`` is not current
(``Keyring.is_current``), then drop the old key from the list.

Envelope scheme (``Keyring.seal``): a fresh random 32-byte data key (DEK) encrypts the canonical
JSON of the secrets (sorted keys, compact separators, UTF-8) with AES-GCM and a random 12-byte
nonce; the newest KEK then wraps the DEK with AES-GCM and its own random 12-byte nonce. The
associated data of both encryptions binds the format version, the KEK id, the caller's
``context`` (e.g. tenant id and source id, so a ciphertext copied to another row fails to open)
and which of the two encryptions it is, every field length-prefixed so no two different inputs
encode alike. The stored blob is::

    version (1 byte) | wrap nonce (12) | wrapped DEK (48) | data nonce (12) | ciphertext (>= 16)

and the KEK id is stored next to it (``SealedSecrets.key_id``). Error messages never contain key
material or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentflow_grpc.model.errors import ConfigurationError, SecretDecryptionError

__all__ = [
    "ENV_VAR",
    "Keyring",
    "SealedSecrets",
    "SecretKeyError",
]

ENV_VAR: Final = "AGENTFLOW_SECRET_KEYS"

FORMAT_VERSION: Final = 1
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
WRAPPED_KEY_SIZE: Final = KEY_SIZE + TAG_SIZE
HEADER_SIZE: Final = 1 + NONCE_SIZE + WRAPPED_KEY_SIZE + NONCE_SIZE
MIN_BLOB_SIZE: Final = HEADER_SIZE + TAG_SIZE

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_AAD_LABEL: Final = b"agentflow.secrets"
_ROLE_WRAP: Final = b"wrap-dek"
_ROLE_DATA: Final = b"data"


class SecretKeyError(ConfigurationError):
    """The keyring (AGENTFLOW_SECRET_KEYS) is malformed; the message never shows key material."""


@dataclass(frozen=True, slots=True)
class SealedSecrets:
    """What is stored: the id of the KEK that wrapped the data key, and the self-describing blob."""

    key_id: str
    blob: bytes


def _associated_data(role: bytes, key_id: str, context: bytes) -> bytes:
    fields = (_AAD_LABEL, bytes([FORMAT_VERSION]), role, key_id.encode("ascii"), context)
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


def _check_keys(keys: Sequence[tuple[str, bytes]], what: str) -> None:
    if not keys:
        raise SecretKeyError(f"{what}: at least one secret key is required")
    seen: set[str] = set()
    for position, (key_id, key) in enumerate(keys, start=1):
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            # The id is not echoed: a malformed entry may have key material where the id belongs.
            raise SecretKeyError(
                f"{what}: entry {position} has an invalid key id "
                "(it must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-')"
            )
        if key_id in seen:
            raise SecretKeyError(f"{what}: entry {position} (id {key_id!r}) repeats an earlier id")
        seen.add(key_id)
        if not isinstance(key, bytes):
            raise SecretKeyError(f"{what}: entry {position} (id {key_id!r}) key is not bytes")
        if len(key) != KEY_SIZE:
            raise SecretKeyError(
                f"{what}: entry {position} (id {key_id!r}) key is {len(key)} bytes; "
                f"it must be exactly {KEY_SIZE} bytes (AES-256)"
            )


def _canonical_json(secrets: Mapping[str, str]) -> bytes:
    if not isinstance(secrets, Mapping):
        raise ValueError("secrets must be a mapping of names to values")
    for name, value in secrets.items():
        if not isinstance(name, str):
            raise ValueError(f"secret names must be strings, not {type(name).__name__}")
        if not isinstance(value, str):
            raise ValueError(f"secret {name!r} must be a string, not {type(value).__name__}")
    text = json.dumps(dict(secrets), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "secret names and values must be valid Unicode (no lone surrogates)"
        ) from None


class Keyring:
    """An ordered set of 256-bit key-encryption keys, newest last."""

    __slots__ = ("_aeads", "_ids")

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        keys = list(keys)
        _check_keys(keys, "secret keyring")
        self._ids: tuple[str, ...] = tuple(key_id for key_id, _ in keys)
        self._aeads: dict[str, AESGCM] = {key_id: AESGCM(key) for key_id, key in keys}

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Read the AGENTFLOW_SECRET_KEYS format: ``ID:BASE64KEY,ID2:BASE64KEY2``, newest last."""
        if not text.strip():
            raise SecretKeyError(f"{ENV_VAR} is empty: give at least one ID:BASE64KEY entry")
        keys: list[tuple[str, bytes]] = []
        for position, raw_entry in enumerate(text.split(","), start=1):
            entry = raw_entry.strip()
            if not entry:
                raise SecretKeyError(f"{ENV_VAR}: entry {position} is empty")
            key_id, colon, encoded = entry.partition(":")
            if not colon:
                raise SecretKeyError(
                    f"{ENV_VAR}: entry {position} has no ':' between the key id and the key"
                )
            key_id, encoded = key_id.strip(), encoded.strip()
            if not _KEY_ID.fullmatch(key_id):
                raise SecretKeyError(
                    f"{ENV_VAR}: entry {position} has an invalid key id "
                    "(it must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-')"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise SecretKeyError(
                    f"{ENV_VAR}: entry {position} (id {key_id!r}) key is not valid standard "
                    "base64 (with its '=' padding)"
                ) from None
            keys.append((key_id, key))
        _check_keys(keys, ENV_VAR)
        return cls(keys)

    @staticmethod
    def generate_key() -> str:
        """A new random 256-bit key as standard base64 text, ready for AGENTFLOW_SECRET_KEYS."""
        return base64.b64encode(AESGCM.generate_key(bit_length=KEY_SIZE * 8)).decode("ascii")

    @property
    def newest_key_id(self) -> str:
        return self._ids[-1]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self._ids

    def is_current(self, sealed_key_id: str) -> bool:
        """Whether secrets sealed under `sealed_key_id` need no re-sealing (newest key)."""
        return sealed_key_id == self.newest_key_id

    def seal(self, secrets: Mapping[str, str], *, context: bytes) -> SealedSecrets:
        """Encrypt `secrets` under a fresh data key wrapped by the newest key, bound to `context`.

        Raises ValueError when a name or value is not a string (or `context` is not bytes).
        """
        if not isinstance(context, bytes):
            raise ValueError("context must be bytes")
        plaintext = _canonical_json(secrets)
        key_id = self.newest_key_id
        dek = AESGCM.generate_key(bit_length=KEY_SIZE * 8)
        wrap_nonce = os.urandom(NONCE_SIZE)
        wrapped = self._aeads[key_id].encrypt(
            wrap_nonce, dek, _associated_data(_ROLE_WRAP, key_id, context)
        )
        data_nonce = os.urandom(NONCE_SIZE)
        ciphertext = AESGCM(dek).encrypt(
            data_nonce, plaintext, _associated_data(_ROLE_DATA, key_id, context)
        )
        blob = b"".join((bytes([FORMAT_VERSION]), wrap_nonce, wrapped, data_nonce, ciphertext))
        return SealedSecrets(key_id=key_id, blob=blob)

    def open(self, sealed: SealedSecrets, *, context: bytes) -> dict[str, str]:
        """Decrypt what `seal` produced under any key of the ring, with the same `context`."""
        if not isinstance(context, bytes):
            raise ValueError("context must be bytes")
        key_id, blob = sealed.key_id, sealed.blob
        kek = self._aeads.get(key_id) if isinstance(key_id, str) else None
        if kek is None:
            raise SecretDecryptionError(
                f"secrets were sealed under key id {key_id!r}, which is not in the keyring "
                f"(known ids: {', '.join(self._ids)})"
            )
        if not isinstance(blob, bytes) or len(blob) < MIN_BLOB_SIZE:
            raise SecretDecryptionError("sealed secrets are truncated or not bytes")
        if blob[0] != FORMAT_VERSION:
            raise SecretDecryptionError(f"sealed secrets have unknown format version {blob[0]}")
        offset = 1
        wrap_nonce = blob[offset : offset + NONCE_SIZE]
        offset += NONCE_SIZE
        wrapped = blob[offset : offset + WRAPPED_KEY_SIZE]
        offset += WRAPPED_KEY_SIZE
        data_nonce = blob[offset : offset + NONCE_SIZE]
        ciphertext = blob[offset + NONCE_SIZE :]
        try:
            dek = kek.decrypt(wrap_nonce, wrapped, _associated_data(_ROLE_WRAP, key_id, context))
        except InvalidTag:
            raise SecretDecryptionError(
                f"cannot unwrap the data key with key id {key_id!r}: "
                "the blob was altered or the context does not match"
            ) from None
        try:
            plaintext = AESGCM(dek).decrypt(
                data_nonce, ciphertext, _associated_data(_ROLE_DATA, key_id, context)
            )
        except InvalidTag:
            raise SecretDecryptionError(
                "cannot decrypt the secrets: the blob was altered or the context does not match"
            ) from None
        try:
            decoded = json.loads(plaintext.decode("utf-8"))
        except ValueError:
            raise SecretDecryptionError("decrypted secrets are not valid JSON") from None
        if not isinstance(decoded, dict):
            raise SecretDecryptionError("decrypted secrets are not a JSON object")
        secrets: dict[str, str] = {}
        for name, value in decoded.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise SecretDecryptionError("decrypted secrets are not an object of strings")
            secrets[name] = value
        return secrets

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self._ids!r})"
