"""Secret encryption at rest: envelope AES-256-GCM, bound to a context, rotatable keyring."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentflow_grpc.model.errors import AgentFlowError, ConfigurationError, SecretDecryptionError
from agentflow_grpc.storage.crypto import Keyring, SealedSecrets, SecretKeyError

OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(100, 132))
OLD_B64 = base64.b64encode(OLD_KEY).decode("ascii")
NEW_B64 = base64.b64encode(NEW_KEY).decode("ascii")
SHORT_B64 = base64.b64encode(bytes(range(16))).decode("ascii")

CONTEXT = b"tenant:acme/source:crm"
SECRETS = {"api_key": "sk-live-0123456789", "password": "hunter2"}

# Blob regions: version (1) | wrap nonce (12) | wrapped DEK (48) | data nonce (12) | ciphertext.
VERSION_AT = 0
WRAP_NONCE = range(1, 13)
WRAPPED_KEY = range(13, 61)
DATA_NONCE = range(61, 73)
CIPHERTEXT_START = 73

KEYRING = Keyring([("old", OLD_KEY), ("new", NEW_KEY)])


def _flip(blob: bytes, position: int) -> bytes:
    changed = bytearray(blob)
    changed[position] ^= 0x01
    return bytes(changed)


def _canonical(secrets: dict[str, str]) -> bytes:
    return json.dumps(secrets, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_round_trip() -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    assert KEYRING.open(sealed, context=CONTEXT) == SECRETS


def test_sealed_under_the_newest_key_with_the_documented_layout() -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    assert sealed.key_id == "new"
    assert sealed.blob[0] == 1
    assert len(sealed.blob) == CIPHERTEXT_START + len(_canonical(SECRETS)) + 16
    for value in SECRETS.values():
        assert value.encode() not in sealed.blob


def test_sealed_secrets_is_frozen() -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sealed.key_id = "old"  # type: ignore[misc]


def test_two_seals_of_the_same_secrets_differ() -> None:
    first = KEYRING.seal(SECRETS, context=CONTEXT)
    second = KEYRING.seal(SECRETS, context=CONTEXT)
    assert first.blob != second.blob
    assert (
        first.blob[WRAP_NONCE.start : WRAP_NONCE.stop]
        != (second.blob[WRAP_NONCE.start : WRAP_NONCE.stop])
    )
    assert KEYRING.open(first, context=CONTEXT) == KEYRING.open(second, context=CONTEXT)


def test_insertion_order_does_not_change_the_plaintext() -> None:
    reordered = dict(reversed(list(SECRETS.items())))
    sealed = KEYRING.seal(reordered, context=CONTEXT)
    assert len(sealed.blob) == CIPHERTEXT_START + len(_canonical(SECRETS)) + 16
    assert KEYRING.open(sealed, context=CONTEXT) == SECRETS


@pytest.mark.parametrize(
    "other_context",
    [
        b"tenant:acme/source:billing",
        b"tenant:evil/source:crm",
        b"",
        CONTEXT + b"\x00",
        CONTEXT[:-1],
    ],
)
def test_open_with_the_wrong_context_fails(other_context: bytes) -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    with pytest.raises(SecretDecryptionError) as caught:
        KEYRING.open(sealed, context=other_context)
    assert caught.value.code == "secret.undecryptable"
    for value in SECRETS.values():
        assert value not in str(caught.value)


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(VERSION_AT, id="version"),
        pytest.param(WRAP_NONCE.start, id="wrap-nonce-first"),
        pytest.param(WRAP_NONCE.stop - 1, id="wrap-nonce-last"),
        pytest.param(WRAPPED_KEY.start, id="wrapped-key-first"),
        pytest.param(WRAPPED_KEY.start + 20, id="wrapped-key-middle"),
        pytest.param(WRAPPED_KEY.stop - 1, id="wrapped-key-tag"),
        pytest.param(DATA_NONCE.start, id="data-nonce-first"),
        pytest.param(DATA_NONCE.stop - 1, id="data-nonce-last"),
        pytest.param(CIPHERTEXT_START, id="ciphertext-first"),
        pytest.param(CIPHERTEXT_START + 5, id="ciphertext-middle"),
        pytest.param(-1, id="ciphertext-tag-last"),
    ],
)
def test_flipping_a_byte_in_any_region_fails(position: int) -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    tampered = SealedSecrets(key_id=sealed.key_id, blob=_flip(sealed.blob, position))
    with pytest.raises(SecretDecryptionError) as caught:
        KEYRING.open(tampered, context=CONTEXT)
    for value in SECRETS.values():
        assert value not in str(caught.value)


def test_flipping_every_byte_fails() -> None:
    sealed = KEYRING.seal({"k": "v"}, context=CONTEXT)
    for position in range(len(sealed.blob)):
        tampered = SealedSecrets(key_id=sealed.key_id, blob=_flip(sealed.blob, position))
        with pytest.raises(SecretDecryptionError):
            KEYRING.open(tampered, context=CONTEXT)


def test_unknown_version_is_named() -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    tampered = SealedSecrets(key_id=sealed.key_id, blob=b"\x02" + sealed.blob[1:])
    with pytest.raises(SecretDecryptionError, match="version 2"):
        KEYRING.open(tampered, context=CONTEXT)


@pytest.mark.parametrize("length", [0, 1, CIPHERTEXT_START, CIPHERTEXT_START + 15])
def test_truncated_blob_fails(length: int) -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    truncated = SealedSecrets(key_id=sealed.key_id, blob=sealed.blob[:length])
    with pytest.raises(SecretDecryptionError, match="truncated"):
        KEYRING.open(truncated, context=CONTEXT)


def test_shortened_or_extended_ciphertext_fails() -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    for blob in (sealed.blob[:-1], sealed.blob + b"\x00"):
        with pytest.raises(SecretDecryptionError):
            KEYRING.open(SealedSecrets(key_id=sealed.key_id, blob=blob), context=CONTEXT)


def test_relabelling_the_key_id_fails() -> None:
    # Same key material under another id: the id is bound into the associated data.
    twins = Keyring([("a", OLD_KEY), ("b", OLD_KEY)])
    sealed = twins.seal(SECRETS, context=CONTEXT)
    assert sealed.key_id == "b"
    with pytest.raises(SecretDecryptionError):
        twins.open(SealedSecrets(key_id="a", blob=sealed.blob), context=CONTEXT)
    sealed_by_new = KEYRING.seal(SECRETS, context=CONTEXT)
    with pytest.raises(SecretDecryptionError):
        KEYRING.open(SealedSecrets(key_id="old", blob=sealed_by_new.blob), context=CONTEXT)


def test_rotation_old_blobs_still_open_and_is_current_tells_them_apart() -> None:
    before = Keyring.parse(f"old:{OLD_B64}")
    old_sealed = before.seal(SECRETS, context=CONTEXT)
    assert old_sealed.key_id == "old"
    assert before.is_current(old_sealed.key_id)

    after = Keyring.parse(f"old:{OLD_B64},new:{NEW_B64}")
    assert after.newest_key_id == "new"
    assert after.key_ids == ("old", "new")
    assert after.open(old_sealed, context=CONTEXT) == SECRETS
    assert not after.is_current(old_sealed.key_id)

    resealed = after.seal(after.open(old_sealed, context=CONTEXT), context=CONTEXT)
    assert resealed.key_id == "new"
    assert after.is_current(resealed.key_id)

    dropped = Keyring.parse(f"new:{NEW_B64}")
    assert dropped.open(resealed, context=CONTEXT) == SECRETS
    with pytest.raises(SecretDecryptionError, match="'old'"):
        dropped.open(old_sealed, context=CONTEXT)


def test_unknown_key_id_is_named() -> None:
    sealed = KEYRING.seal(SECRETS, context=CONTEXT)
    with pytest.raises(SecretDecryptionError, match="retired-2023") as caught:
        KEYRING.open(SealedSecrets(key_id="retired-2023", blob=sealed.blob), context=CONTEXT)
    assert isinstance(caught.value, AgentFlowError)
    assert caught.value.code == "secret.undecryptable"


@pytest.mark.parametrize(
    ("text", "problem", "secret_text"),
    [
        pytest.param("", "empty", None, id="empty"),
        pytest.param("   ", "empty", None, id="blank"),
        pytest.param(f"primary{OLD_B64}", "no ':'", OLD_B64, id="missing-colon"),
        pytest.param(f"a:{OLD_B64},", "entry 2 is empty", OLD_B64, id="trailing-comma"),
        pytest.param("a:not*base64!!", "base64", "not*base64!!", id="bad-base64"),
        pytest.param(f"a:{OLD_B64.rstrip('=')}", "base64", OLD_B64.rstrip("="), id="no-padding"),
        pytest.param(f"a:{OLD_B64[:20]} {OLD_B64[20:]}", "base64", OLD_B64[:20], id="inner-space"),
        pytest.param(f"short:{SHORT_B64}", "16 bytes", SHORT_B64, id="wrong-length"),
        pytest.param(f"a:{OLD_B64},a:{NEW_B64}", "entry 2 (id 'a') repeats", NEW_B64, id="dup"),
        pytest.param(f"bad id!:{OLD_B64}", "entry 1 has an invalid key id", OLD_B64, id="id-chars"),
        pytest.param(f":{OLD_B64}", "invalid key id", OLD_B64, id="empty-id"),
        pytest.param(f"{'x' * 65}:{OLD_B64}", "invalid key id", OLD_B64, id="id-too-long"),
        pytest.param(f"{OLD_B64}:primary", "invalid key id", OLD_B64, id="swapped"),
    ],
)
def test_parse_errors(text: str, problem: str, secret_text: str | None) -> None:
    with pytest.raises(SecretKeyError) as caught:
        Keyring.parse(text)
    message = str(caught.value)
    assert problem in message
    assert "AGENTFLOW_SECRET_KEYS" in message
    assert caught.value.code == "configuration"
    assert isinstance(caught.value, ConfigurationError)
    if secret_text is not None:
        assert secret_text not in message
    for key in (OLD_B64, NEW_B64, SHORT_B64):
        assert key not in message


def test_parse_names_the_entry_by_position_and_id() -> None:
    with pytest.raises(SecretKeyError, match=r"entry 2 \(id 'second'\)"):
        Keyring.parse(f"first:{OLD_B64},second:{SHORT_B64}")


def test_parse_tolerates_whitespace_around_entries() -> None:
    keyring = Keyring.parse(f"  old : {OLD_B64} ,\n new:{NEW_B64}\n")
    assert keyring.key_ids == ("old", "new")
    assert keyring.open(KEYRING.seal(SECRETS, context=CONTEXT), context=CONTEXT) == SECRETS


def test_parse_accepts_every_id_character() -> None:
    keyring = Keyring.parse(f"Key_1.2-a:{OLD_B64},{'z' * 64}:{NEW_B64}")
    assert keyring.key_ids == ("Key_1.2-a", "z" * 64)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        pytest.param([], "at least one", id="no-keys"),
        pytest.param([("a", bytes(16))], "16 bytes", id="short-key"),
        pytest.param([("a", bytes(33))], "33 bytes", id="long-key"),
        pytest.param([("a", OLD_KEY), ("a", NEW_KEY)], "repeats", id="duplicate"),
        pytest.param([("no spaces", OLD_KEY)], "invalid key id", id="bad-id"),
    ],
)
def test_constructor_validates(keys: list[tuple[str, bytes]], problem: str) -> None:
    with pytest.raises(SecretKeyError, match=problem):
        Keyring(keys)


def test_repr_shows_ids_only() -> None:
    keyring = Keyring.parse(f"old:{OLD_B64},new:{NEW_B64}")
    text = repr(keyring)
    assert "old" in text
    assert "new" in text
    for material in (OLD_B64, NEW_B64, repr(OLD_KEY), repr(NEW_KEY), OLD_KEY.hex(), NEW_KEY.hex()):
        assert material not in text
    assert str(keyring) == text


def test_generate_key_parses() -> None:
    first, second = Keyring.generate_key(), Keyring.generate_key()
    assert first != second
    assert len(base64.b64decode(first, validate=True)) == 32
    keyring = Keyring.parse(f"k1:{first},k2:{second}")
    sealed = keyring.seal(SECRETS, context=CONTEXT)
    assert keyring.open(sealed, context=CONTEXT) == SECRETS


def test_empty_secrets_round_trip() -> None:
    sealed = KEYRING.seal({}, context=CONTEXT)
    assert KEYRING.open(sealed, context=CONTEXT) == {}


def test_unicode_secrets_round_trip() -> None:
    secrets = {"pässwörd": "пароль-密码-🔑", "emoji🙂": "", 'quote"\\': "line\nbreak\u0000nul"}
    sealed = KEYRING.seal(secrets, context="tenant:ünï/source:1".encode())
    assert KEYRING.open(sealed, context="tenant:ünï/source:1".encode()) == secrets


@pytest.mark.parametrize(
    "secrets",
    [
        pytest.param({"port": 5432}, id="int-value"),
        pytest.param({"token": b"bytes"}, id="bytes-value"),
        pytest.param({"token": None}, id="none-value"),
        pytest.param({1: "one"}, id="int-name"),
    ],
)
def test_non_string_secrets_are_refused(secrets: dict[object, object]) -> None:
    with pytest.raises(ValueError, match=r"must be (strings|a string)"):
        KEYRING.seal(secrets, context=CONTEXT)  # type: ignore[arg-type]


def test_lone_surrogate_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="Unicode") as caught:
        KEYRING.seal({"token": "abc\ud800def"}, context=CONTEXT)
    assert "abc" not in str(caught.value)


@given(
    secrets=st.dictionaries(st.text(), st.text(), max_size=8),
    context=st.binary(max_size=64),
)
def test_any_text_dict_round_trips(secrets: dict[str, str], context: bytes) -> None:
    sealed = KEYRING.seal(secrets, context=context)
    assert sealed.key_id == KEYRING.newest_key_id
    assert KEYRING.open(sealed, context=context) == secrets
