"""Destination secrets at rest: Fernet (AES-128-CBC + HMAC) with a key from settings.

In production the key is a Key Vault reference in the app settings (see infra/). A secret is never
returned, logged or put in an exception: callers only ever see `mask_connection_string`.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from .errors import ConfigurationError


class SecretBox:
    """Seals and opens secrets; the key is checked on first use, so operations that touch no secret run without one."""

    def __init__(self, key: str):
        self._key = key
        self._cipher: Fernet | None = None

    @property
    def _fernet(self) -> Fernet:
        if self._cipher is None:
            self._cipher = _fernet(self._key)
        return self._cipher

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        fernet = self._fernet  # a missing key is reported as missing, not as a token it cannot decrypt
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "cannot decrypt a stored secret (was the key rotated?)", field="EXPORT_SECRET_KEY"
            ) from None


def _fernet(key: str) -> Fernet:
    if not key:
        raise ConfigurationError(
            "is not set (generate one with `python -m exporter secret-key`)", field="EXPORT_SECRET_KEY"
        )
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise ConfigurationError("is not a valid Fernet key", field="EXPORT_SECRET_KEY") from None


def new_key() -> str:
    return Fernet.generate_key().decode()
