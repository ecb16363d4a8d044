"""Envelope encryption of tenant secrets (provider API keys) at rest, with ``cryptography``.

Each secret gets its own random data key (AES-256-GCM); the data key is stored wrapped
(AES-256-GCM) by the master key from settings, together with the master key's id, so the
master key can be rotated: set a new ``CADENZA_SECRETS_MASTER_KEY(_ID)`` and keep the old
one in ``CADENZA_SECRETS_PREVIOUS_MASTER_KEYS`` until every secret has been re-written.
The associated data (e.g. ``tenant/name``) binds a ciphertext to its row: a ciphertext
copied to another tenant's row does not decrypt.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_NONCE = 12


class SecretsSettings(BaseSettings):
    """The master key that wraps every tenant secret's data key."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_SECRETS_", extra="ignore")

    master_key: SecretStr = Field(
        default=SecretStr(""),
        description="32 random bytes, base64 (e.g. `openssl rand -base64 32`). Empty = tenant "
        "secrets (provider keys) cannot be stored or used.",
    )
    master_key_id: str = Field(
        default="k1", min_length=1, max_length=64, description="Name of `master_key`."
    )
    previous_master_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Older master keys by id (JSON object), still used to decrypt.",
    )

    @field_validator("master_key")
    @classmethod
    def _valid_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            _decode_key(value)
        return value


def _decode_key(value: SecretStr) -> bytes:
    try:
        key = base64.b64decode(value.get_secret_value(), validate=True)
    except ValueError:
        raise ValueError("a master key must be base64") from None
    if len(key) != 32:
        raise ValueError("a master key must be 32 bytes (base64 of `openssl rand 32`)")
    return key


class SecretsUnavailable(Exception):
    """No master key is configured (or not the one a secret was written with)."""


class SecretCorrupted(Exception):
    """The ciphertext does not decrypt (tampered, or moved to another row)."""


@dataclass(frozen=True)
class SealedSecret:
    ciphertext: bytes  # nonce + AES-GCM(data key, secret)
    wrapped_key: bytes  # nonce + AES-GCM(master key, data key)
    master_key_id: str


class EnvelopeCipher:
    def __init__(self, settings: SecretsSettings) -> None:
        self.current_id = settings.master_key_id
        self.keys: dict[str, bytes] = {
            kid: _decode_key(key) for kid, key in settings.previous_master_keys.items()
        }
        if settings.master_key.get_secret_value():
            self.keys[self.current_id] = _decode_key(settings.master_key)

    @property
    def configured(self) -> bool:
        return self.current_id in self.keys

    def seal(self, secret: str, associated: str) -> SealedSecret:
        if not self.configured:
            raise SecretsUnavailable("no master key: set CADENZA_SECRETS_MASTER_KEY")
        data_key = AESGCM.generate_key(bit_length=256)
        return SealedSecret(
            ciphertext=_encrypt(data_key, secret.encode(), associated),
            wrapped_key=_encrypt(self.keys[self.current_id], data_key, associated),
            master_key_id=self.current_id,
        )

    def open(self, sealed: SealedSecret, associated: str) -> str:
        master = self.keys.get(sealed.master_key_id)
        if master is None:
            raise SecretsUnavailable(f"master key {sealed.master_key_id!r} is not configured")
        try:
            data_key = _decrypt(master, sealed.wrapped_key, associated)
            return _decrypt(data_key, sealed.ciphertext, associated).decode()
        except InvalidTag:
            raise SecretCorrupted("the secret does not decrypt (tampered or moved)") from None


def _encrypt(key: bytes, plaintext: bytes, associated: str) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated.encode())


def _decrypt(key: bytes, sealed: bytes, associated: str) -> bytes:
    return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], associated.encode())
