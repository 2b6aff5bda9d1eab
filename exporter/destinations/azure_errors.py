"""What an Azure Storage failure means, in our words: the one error map of the Azure Blob destination.

Known failures become CredentialError / DestinationError / TransientError with sentences of ours, chosen
by Azure Storage's documented error codes and the HTTP status class; nothing else the server sent (its
body, an unknown code, the status, an exception's class name) reaches the customer; SDK text can carry
URLs with a SAS. At verification an answer that is not Azure Storage's own kind (no server, a server
speaking something else, an unknown refusal) gets one sentence, so the answer says nothing about what
listens at the address. Anything else (a TypeError in our code) is not mapped: it passes with its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

from .. import egress
from ..errors import CredentialError, DestinationError, ExporterError, TransientError
from .common import REDIRECTS, TRANSIENT_STATUSES, ErrorMap, refused_answer

FIELD = "destination.connection_string"
ACCOUNT_URL_FIELD = "destination.account_url"  # KEYLESS HOOK (issue 24): the keyless body's address
ROLE = "Storage Blob Data Contributor"  # what the platform's Entra application needs on a keyless container
PERMISSION_CODES = {
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "AuthorizationProtocolMismatch",
}
ACCOUNT_NOT_FOUND_CODES = {"ResourceNotFound", "AccountNotFound"}
# What a refusal means to a customer, by error code; any other refusal gets REFUSED_BY_STATUS's sentence.
REFUSED_BY_CODE = {
    "OutOfRangeInput": "the storage service refused the container name or the path prefix as out of range; check both",
    "InvalidResourceName": "the storage service refused the container name or the path prefix as invalid; check both",
    "InvalidUri": "the storage service could not use the address; check the endpoint in the connection string, the container name and the prefix",
    "AccountIsDisabled": "the storage account is disabled; enable it in the Azure portal",
    "ContainerBeingDeleted": "the container is being deleted; create it again once the deletion has finished",
    "ContainerDisabled": "the container is disabled; enable it in the Azure portal",
    "BlobImmutableDueToPolicy": "the container's immutability policy refuses new or changed files",
}
REFUSED_BY_STATUS = {
    400: "the storage service refused the request as invalid; check the endpoint in the connection string, the container name and the prefix",
    404: "the storage service found no such resource; check the account name or endpoint and the container name",
    409: "the storage service refused the request because of the container's current state; check the container in the Azure portal",
}
REFUSED = "the storage service refused the request; check the destination's settings"


class EntraSignInFailed(Exception):
    """KEYLESS HOOK (issue 24): Entra ID did not sign the platform's application in to the customer's tenant
    (keyless_azure.py tags it: refused, or `transient` when Entra was out of reach). No server text."""

    def __init__(self, client_id: str, transient: bool):
        super().__init__(client_id)
        self.client_id, self.transient = client_id, transient


def sign_in_failure(exc: EntraSignInFailed) -> ExporterError:
    if exc.transient:
        return TransientError("could not reach Microsoft Entra ID; try again later")
    return CredentialError(
        f"Microsoft Entra ID refused to sign the platform's application {exc.client_id} in to your tenant: "
        f"consent the application in the tenant, then grant it {ROLE!r} on the container"
    )


def permission_refused(container: str, code: str) -> str:
    """Valid credentials without the permission; KEYLESS HOOK (issue 24): says the role an Entra sign-in needs."""
    return (
        f"the credentials are valid but lack the permission to write to container {container!r} ({code}): give a key "
        f"or SAS that may, or, signed in by Entra ID, grant the platform's application {ROLE!r} on the container"
    )


def error_code(exc: HttpResponseError) -> str:
    """The storage error code ('AuthorizationFailure', ...), from the SDK or the response header (matched, never shown)."""
    code = (
        getattr(exc, "error_code", None)
        or (getattr(exc.response, "headers", {}).get("x-ms-error-code") if exc.response is not None else None)
        or ""
    )
    return str(getattr(code, "value", code))  # the SDK gives a StorageErrorCode enum


def is_permission_refusal(exc: BaseException) -> bool:
    """Valid credentials that lack a permission (as opposed to wrong or expired ones)."""
    return isinstance(exc, HttpResponseError) and exc.status_code in (401, 403) and error_code(exc) in PERMISSION_CODES


def classify(
    exc: BaseException, container: str, *, verifying: bool = False, endpoint: str = ""
) -> ExporterError | None:
    """Our error for an Azure Storage failure; None for anything else (a bug of ours, re-raised by `mapped`)."""
    return AzureErrors(container, endpoint).classify(exc, verifying=verifying)


@dataclass(frozen=True)
class AzureErrors(ErrorMap):
    """The error map of one container at `endpoint` (the connection string's BlobEndpoint; KEYLESS HOOK: or the
    keyless body's account URL, `field` then naming it)."""

    container: str
    endpoint: str = ""
    field: str = FIELD

    def unusable(self) -> DestinationError:
        """Verification's one answer for whatever is at the endpoint when it is not Azure Storage answering."""
        if self.field == ACCOUNT_URL_FIELD:  # KEYLESS HOOK (issue 24)
            return DestinationError(
                f"could not reach a storage account at {self.endpoint}, or it refused the request: "
                "check the account URL and the container name"
            )
        return DestinationError(
            f"could not reach a storage account at {self.endpoint or 'the endpoint'}, or it refused the request: "
            "check the storage account name or the BlobEndpoint in the connection string, and the container name"
        )

    def known(self, exc: BaseException, operation: str | None, verifying: bool) -> ExporterError | None:
        if isinstance(exc, EntraSignInFailed):  # KEYLESS HOOK (issue 24): before any request to the account
            return sign_in_failure(exc)
        if isinstance(exc, HttpResponseError) and exc.status_code is not None:
            return self._answer(exc.status_code, error_code(exc), verifying)
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return self.unusable() if verifying else TransientError("could not reach the storage endpoint")
        if isinstance(exc, AzureError):
            return self.unusable() if verifying else TransientError("the storage request failed; it is tried again")
        return None

    def _answer(self, status: int, code: str, verifying: bool) -> ExporterError:
        if status in REDIRECTS and not egress.trusted_url(self.endpoint):
            return refused_answer(egress.EgressRefused(self.field, egress.REASON_REDIRECT), verifying)
        if status in (401, 403):
            if code in PERMISSION_CODES:
                return CredentialError(permission_refused(self.container, code))
            if code == "AuthorizationSourceIPMismatch":
                return CredentialError("the storage account's firewall refuses our IP addresses; allowlist them")
            if self.field == ACCOUNT_URL_FIELD:  # KEYLESS HOOK (issue 24)
                return CredentialError(
                    "the storage account refused the platform's Entra ID token: check that the account URL names "
                    "your storage account and that it accepts Microsoft Entra ID authorization"
                )
            return CredentialError(
                "the storage account refused the credentials: wrong account key, or an expired or invalid SAS"
            )
        if status == 404 and code == "ContainerNotFound":
            return DestinationError(f"container {self.container!r} does not exist in the storage account")
        if status == 404 and code in ACCOUNT_NOT_FOUND_CODES:
            return DestinationError("the storage account was not found: check the account name or endpoint")
        if status in TRANSIENT_STATUSES or status >= 500:
            return TransientError("the storage service is unavailable or throttling; try again later")
        if code in REFUSED_BY_CODE:
            return DestinationError(REFUSED_BY_CODE[code])
        if verifying:
            return self.unusable()
        return DestinationError(REFUSED_BY_STATUS.get(status, REFUSED))
