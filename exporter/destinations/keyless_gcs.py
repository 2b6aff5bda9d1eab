"""GCS by the platform's identity: Application Default Credentials, optionally impersonating the customer's account.

The customer grants the platform's Google service account (EXPORT_GCP_SERVICE_ACCOUNT) on the bucket,
or lets it impersonate a service account of their own (roles/iam.serviceAccountTokenCreator) and
names that one as `impersonate`. In Azure, ADC is a workload identity federation `external_account`
file (GOOGLE_APPLICATION_CREDENTIALS): the app's managed-identity token exchanged at Google's STS.
google-auth runs every step; no key exists on either side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, InputError
from ..identity import current_opening
from .gcs_errors import PlatformTokenFailed

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.auth.transport import Request

SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
SERVICE_ACCOUNT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]{1,200}\.iam\.gserviceaccount\.com$")
LIFETIME_SECONDS = 3600


def check_impersonate(value: object, field: str = "destination.impersonate") -> str | None:
    """A service account's email, sa@project.iam.gserviceaccount.com (null: the platform's own identity)."""
    if value is None:
        return None
    if not isinstance(value, str) or not SERVICE_ACCOUNT_RE.fullmatch(value):
        raise InputError(
            "must be a service account email such as export@my-project.iam.gserviceaccount.com", field=field
        )
    return value


def check_either(checked: Mapping[str, object], partial: bool) -> None:
    """A key, or the platform's identity (optionally impersonating): a key with `impersonate` is refused."""
    if checked.get("impersonate") is not None and checked.get("service_account_key") is not None:
        raise InputError(
            "and service_account_key exclude each other: give a key, or let the platform impersonate "
            "your service account (keyless), not both",
            field="destination.impersonate",
        )


def platform_credentials(impersonate: str | None) -> Credentials:
    """The platform's Google credentials (ADC), impersonating `impersonate` when given; refusals become ours."""
    import google.auth
    from google.auth import exceptions as auth_exceptions
    from google.auth import impersonated_credentials

    platform = current_opening("a GCS destination without a key").platform
    if not platform.gcp_service_account:  # and ADC is not even looked for (it may probe a metadata server)
        raise InputError(
            "is required: this service has no Google identity of its own to grant (keyless access is not set up)",
            field="destination.service_account_key",
        )
    try:
        # No scopes here: with scopes, external-account ADC would look its project up at Cloud Resource Manager.
        found, _project = google.auth.default()
    except auth_exceptions.DefaultCredentialsError:
        raise ConfigurationError(
            "names the platform's service account, but no Application Default Credentials were found "
            "(GOOGLE_APPLICATION_CREDENTIALS)",
            field="EXPORT_GCP_SERVICE_ACCOUNT",
        ) from None
    credentials = google.auth.credentials.with_scopes_if_required(found, SCOPES)
    _refusals_tagged(credentials, platform.gcp_service_account, None)  # the platform's own exchange
    if impersonate:
        credentials = impersonated_credentials.Credentials(
            source_credentials=credentials,
            target_principal=impersonate,
            target_scopes=SCOPES,
            lifetime=LIFETIME_SECONDS,
            iam_endpoint_override=platform.gcp_iam_endpoint.format(impersonate) if platform.gcp_iam_endpoint else None,
        )
        _refusals_tagged(credentials, platform.gcp_service_account, impersonate)
    return credentials


def _refusals_tagged(credentials: Credentials, platform_account: str, impersonate: str | None) -> None:
    """A failed token request (exchange or impersonation) is tagged with its step, for the error map's words.

    The refresh is wrapped on this instance: google-auth calls it before a request, and the storage client
    passes the tag through unchanged to the bucket's error map (gcs_errors.platform_token_failure), which
    says what to grant; google-auth's text (a server's answer) is dropped.
    """
    from google.auth import exceptions as auth_exceptions

    refresh = credentials.refresh

    def refreshed(request: Request) -> None:
        try:
            refresh(request)
        except (auth_exceptions.RefreshError, auth_exceptions.OAuthError) as exc:  # exchange refusals are OAuthError
            transient = bool(getattr(exc, "retryable", False))
            raise PlatformTokenFailed(platform_account, impersonate, transient) from None
        except auth_exceptions.TransportError:
            raise PlatformTokenFailed(platform_account, impersonate, transient=True) from None

    # Wrapped on this instance only (its class's refresh is google-auth's): an instance attribute, set as one.
    vars(credentials)["refresh"] = refreshed
