"""Destination secrets at rest: Fernet (AES-128-CBC + HMAC) with a key from settings.

In production the key is a Key Vault reference in the app settings (see infra/). A secret is never
returned, logged or put in an exception: callers only ever see `mask_connection_string`.
"""
from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from .errors import ConfigurationError


class SecretBox:
    def __init__(self, key: str):
        if not key:
            raise ConfigurationError("is not set (generate one with `python -m exporter secret-key`)", field="EXPORT_SECRET_KEY")
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError):
            raise ConfigurationError("is not a valid Fernet key", field="EXPORT_SECRET_KEY") from None

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError("cannot decrypt a stored secret (was the key rotated?)", field="EXPORT_SECRET_KEY") from None


def new_key() -> str:
    return Fernet.generate_key().decode()
