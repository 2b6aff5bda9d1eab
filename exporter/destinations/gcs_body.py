"""The GCS destination's body: its bucket and service-account key checks, and the credentials sealed at rest."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..errors import InputError, InternalError
from ..validation import check_text
from .common import BucketBody, Check, check_endpoint_url, mask_email, text_field
from .kept_clients import KEPT_CLIENTS, kept_key
from .keyless_gcs import check_either, check_impersonate, platform_credentials  # KEYLESS HOOK (issue 24)

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

REQUIRED = ("bucket",)  # no key: the platform's identity (KEYLESS HOOK, issue 24)
KEY_FIELD = "destination.service_account_key"
TOKEN_FIELD = f"{KEY_FIELD}.token_uri"
KEY_REQUIRED = ("type", "client_email", "private_key", "token_uri")
MAX_KEY_BYTES = 16 * 1024
BUCKET_RE = re.compile(r"^(?=.{3,222}$)[a-z0-9][a-z0-9._-]*[a-z0-9]$")
IP_LIKE_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
# Google's bucket naming rules: no "goog" prefix, and no "google" inside, nor a close misspelling of it.
GOOGLE_LIKE_RE = re.compile(r"g[o0][o0]g[l1i][e3]")
EMAIL_RE = re.compile(r"^[^@\s]{1,128}@[A-Za-z0-9.-]{1,253}$")
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
DEFAULT_ENDPOINT = "https://storage.googleapis.com"


def check_bucket(value: object, field: str = "destination.bucket") -> str:
    """Cloud Storage's bucket naming rule ('_' and dotted names up to 222 characters, unlike S3 and Azure)."""
    if (
        not isinstance(value, str)
        or not BUCKET_RE.fullmatch(value)
        or ".." in value
        or (len(value) > 63 and "." not in value)
    ):
        raise InputError(
            "must be a Cloud Storage bucket name: 3-63 lowercase letters, digits, '-', '_' and '.'", field=field
        )
    if IP_LIKE_RE.fullmatch(value) or any(len(part) > 63 for part in value.split(".")):
        raise InputError("must not be an IP address, nor have a dotted part over 63 characters", field=field)
    if value.startswith("goog") or GOOGLE_LIKE_RE.search(value):
        raise InputError(
            "must not start with 'goog' nor contain 'google' or a close misspelling of it "
            "(Cloud Storage's bucket naming rules)",
            field=field,
        )
    return value


def check_service_account_key(value: object, field: str = KEY_FIELD) -> dict[str, str]:
    """A service-account key file (the JSON object Google issues), with a private key that parses."""
    if not isinstance(value, dict):
        raise InputError("must be the service account's JSON key file (an object)", field=field)
    check_text(value, field)
    if len(json.dumps(value)) > MAX_KEY_BYTES:
        raise InputError(f"is larger than {MAX_KEY_BYTES} bytes; it is not a service account key file", field=field)
    for name in KEY_REQUIRED:
        if not isinstance(value.get(name), str) or not value[name].strip():
            raise InputError(
                "is required (copy the whole JSON key file of the service account)", field=f"{field}.{name}"
            )
    for name, item in value.items():
        if not isinstance(item, str):
            raise InputError("must be a string, as in the key file", field=f"{field}.{name}")
    if value["type"] != "service_account":
        raise InputError("must be 'service_account': create a key for a service account", field=f"{field}.type")
    if not EMAIL_RE.fullmatch(value["client_email"]):
        raise InputError("must be the service account's email address", field=f"{field}.client_email")
    check_endpoint_url(value["token_uri"], f"{field}.token_uri")
    try:
        load_pem_private_key(value["private_key"].encode(), password=None)
    except (ValueError, TypeError):
        raise InputError(
            "is not a PEM private key (copy it unchanged from the key file)", field=f"{field}.private_key"
        ) from None
    return value


CREDENTIAL_CHECKS: dict[str, Check] = {
    "service_account_key": check_service_account_key,
    "endpoint_url": check_endpoint_url,
    "impersonate": check_impersonate,  # KEYLESS HOOK (issue 24)
}


@dataclass(frozen=True)
class GcsCredentials:
    """Everything sealed for a GCS destination. `masked` is the only form ever shown."""

    service_account_key: dict[str, str] | None = field(repr=False)  # None: keyless (KEYLESS HOOK, issue 24)
    endpoint_url: str | None = None
    impersonate: str | None = None  # KEYLESS HOOK (issue 24): the customer's service account, or the platform's own

    @classmethod
    def from_secret(cls, secret: str) -> GcsCredentials:
        return credentials_from_fields(json.loads(secret))

    def to_secret(self) -> str:
        return json.dumps(
            {"service_account_key": self.service_account_key, "endpoint_url": self.endpoint_url}
            | ({"impersonate": self.impersonate} if self.service_account_key is None else {})  # KEYLESS HOOK
        )

    @property
    def client_email(self) -> str:
        return (self.service_account_key or {}).get("client_email", "")

    @property
    def token_uri(self) -> str | None:
        """The key's token endpoint (a customer's address); None without a key (KEYLESS HOOK: the platform's own)."""
        return self.service_account_key["token_uri"] if self.service_account_key is not None else None

    @property
    def masked(self) -> str:
        """The public part, as JSON: the masked service account email (keyless: whom to impersonate) and the endpoint."""
        if self.service_account_key is None:  # KEYLESS HOOK (issue 24): nothing secret to mask
            return json.dumps({"impersonate": self.impersonate, "endpoint_url": self.endpoint_url})
        return json.dumps({"client_email": mask_email(self.client_email), "endpoint_url": self.endpoint_url})

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or DEFAULT_ENDPOINT

    def kept_google_credentials(self) -> Credentials:
        """`google_credentials`, kept between one integration's jobs with the token they fetched (kept_clients.py):
        parsing the key costs ~50 ms of CPU, and a new credential fetches a token before its first request.

        Keyless credentials are not kept here (KEYLESS HOOK, issue 24: the platform's own are kept by their module).
        """
        if self.service_account_key is None:
            return self.google_credentials()
        material = {"key": self.service_account_key, "endpoint_url": self.endpoint_url}
        return KEPT_CLIENTS.get(kept_key("gcs", material), self.google_credentials)

    def google_credentials(self) -> Credentials:
        """The google-auth service-account credentials (their token flow signs a JWT with the key)."""
        from google.auth import exceptions as auth_exceptions
        from google.oauth2 import service_account

        if self.service_account_key is None:  # KEYLESS HOOK (issue 24): ADC, impersonating when asked
            return platform_credentials(self.impersonate)
        try:
            return service_account.Credentials.from_service_account_info(self.service_account_key, scopes=SCOPES)
        except (ValueError, KeyError, TypeError, auth_exceptions.GoogleAuthError):
            raise InputError("is not a usable service account key", field=KEY_FIELD) from None


def credentials_from_fields(fields: Mapping[str, object]) -> GcsCredentials:
    """The credential part of a checked body (or of a stored one merged with an update)."""
    check_either(dict(fields), partial=False)  # KEYLESS HOOK (issue 24): a merged update too
    key = fields.get("service_account_key")
    if key is not None and not isinstance(key, dict):
        raise InternalError("destination.service_account_key was not checked as a key file")
    return GcsCredentials(key, text_field(fields, "endpoint_url"), text_field(fields, "impersonate"))


BODY = BucketBody(check_bucket, CREDENTIAL_CHECKS, REQUIRED, credentials_from_fields, check_either)
