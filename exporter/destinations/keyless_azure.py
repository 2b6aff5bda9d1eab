"""Azure Blob by Entra ID: the platform's multi-tenant application signs in to the customer's tenant.

No secret exists anywhere: the application's credential is a federated identity credential whose
assertion is the app's managed-identity token for `api://AzureADTokenExchange`, and azure-identity's
`ClientAssertionCredential` exchanges it, in the customer's tenant, for a storage token. The
customer consents the application and grants it "Storage Blob Data Contributor" on the container.
The storage SDK speaks OAuth with that credential; this module only builds it and words refusals.

A keyless destination's stored text is JSON `{"account_url", "tenant_id"}` (nothing secret); a
connection string never starts with `{`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from ..errors import InputError
from ..identity import PlatformIdentity, current_opening
from ..validation import check_text
from .azure_errors import ACCOUNT_URL_FIELD, EntraSignInFailed

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
    from azure.identity import ClientAssertionCredential

T = TypeVar("T")

TENANT_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"


def check_account_url(value: object, field: str = ACCOUNT_URL_FIELD) -> str:
    """The storage account's blob endpoint, https://acct.blob.core.windows.net (https: tokens need it)."""
    if not isinstance(value, str) or len(value) > 2048:
        raise InputError("must be the account's blob URL such as https://acct.blob.core.windows.net", field=field)
    check_text(value, field)
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password or parts.query:
        raise InputError(
            "must be the account's https blob URL such as https://acct.blob.core.windows.net (no query: no SAS)",
            field=field,
        )
    return value.strip().rstrip("/")


def check_tenant_id(value: object, field: str = "destination.tenant_id") -> str:
    if not isinstance(value, str) or not TENANT_RE.fullmatch(value):
        raise InputError("must be your Microsoft Entra tenant id (a GUID)", field=field)
    return value.lower()


def check_either(checked: Mapping[str, object], partial: bool) -> None:
    """A connection string, or an account URL with a tenant (keyless), not both."""
    keyless = [name for name in ("account_url", "tenant_id") if checked.get(name) is not None]
    if keyless and checked.get("connection_string") is not None:
        raise InputError(
            "and connection_string exclude each other: give a connection string, or the account URL and your "
            "tenant id (keyless), not both",
            field=f"destination.{keyless[0]}",
        )
    if partial or checked.get("connection_string") is not None:
        return
    for name in ("account_url", "tenant_id") if keyless else ("connection_string",):
        if checked.get(name) is None:
            raise InputError("is required", field=f"destination.{name}")


def is_keyless(secret: str) -> bool:
    return secret.lstrip().startswith("{")


def to_secret(fields: Mapping[str, object]) -> str:
    check_either(fields, partial=False)  # a merged update too: a key and a tenant is refused
    if fields.get("connection_string") is not None:
        return str(fields["connection_string"])
    return json.dumps({"account_url": fields["account_url"], "tenant_id": fields["tenant_id"]})


def from_secret(secret: str) -> dict[str, object]:
    return json.loads(secret) if is_keyless(secret) else {"connection_string": secret}


def shown(masked: str) -> dict[str, object]:
    return json.loads(masked) if is_keyless(masked) else {"connection_string": masked}


@dataclass(frozen=True)
class EntraBlob:
    """A keyless destination's account: the same face as a parsed connection string (BlobCredentials)."""

    blob_endpoint: str
    tenant_id: str
    container: str | None = None
    auth: str = "entra_id"

    @property
    def account_name(self) -> str:
        return (urlsplit(self.blob_endpoint).hostname or "").split(".")[0]

    @property
    def masked(self) -> str:
        return json.dumps({"account_url": self.blob_endpoint, "tenant_id": self.tenant_id})


def parse(secret: str) -> EntraBlob:
    fields = json.loads(secret)
    return EntraBlob(check_account_url(fields["account_url"]), check_tenant_id(fields["tenant_id"]))


_credentials: dict[tuple[PlatformIdentity, str], _Worded] = {}
_lock = threading.Lock()


def credential(tenant_id: str) -> _Worded:
    """The platform application's credential in `tenant_id` (one per tenant: azure-identity caches its tokens)."""
    platform = current_opening("an Azure destination by Entra ID").platform
    if not platform.azure_client_id:
        raise InputError(
            "cannot be signed in to: this service has no Entra application of its own (keyless access is not set up)",
            field="destination.tenant_id",
        )
    with _lock:
        found = _credentials.get((platform, tenant_id))
        if found is None:
            found = _credentials[(platform, tenant_id)] = _Worded(_assertion_credential(platform, tenant_id), platform)
        return found


def _assertion_credential(platform: PlatformIdentity, tenant_id: str) -> ClientAssertionCredential:
    from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

    # The app's user-assigned identity (the one its storage uses); its token is the application's proof.
    identity = ManagedIdentityCredential(client_id=platform.managed_identity_client_id or None)

    def assertion() -> str:
        return str(identity.get_token(EXCHANGE_SCOPE).token)

    options: dict[str, str | bool] = {}
    if platform.azure_authority_host:  # an operator setting (a sovereign cloud, or the loopback stand-in)
        options = {"authority": platform.azure_authority_host, "disable_instance_discovery": True}
    return ClientAssertionCredential(tenant_id, platform.azure_client_id, assertion, **options)


class _Worded:
    """A TokenCredential whose failures are tagged for the container's error map (azure_errors.sign_in_failure),
    which says what the customer must do; azure-identity's text (Entra's answer) is dropped."""

    def __init__(self, inner: ClientAssertionCredential, platform: PlatformIdentity):
        self.inner, self.platform = inner, platform

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: object,
    ) -> AccessToken:
        return self._worded(
            lambda: self.inner.get_token(*scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs)
        )

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return self._worded(lambda: self.inner.get_token_info(*scopes, options=options))

    def _worded(self, call: Callable[[], T]) -> T:
        from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

        try:
            return call()
        except ClientAuthenticationError:
            raise EntraSignInFailed(self.platform.azure_client_id, transient=False) from None
        except ServiceRequestError:
            raise EntraSignInFailed(self.platform.azure_client_id, transient=True) from None

    def close(self) -> None:
        self.inner.close()
