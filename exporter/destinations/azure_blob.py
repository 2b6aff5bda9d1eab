"""Azure Blob Storage destination: connection-string parsing, verification, staged-block files.

Every failure is turned into CredentialError / DestinationError / TransientError here, with a
message built from status and error code only: SDK exception text can carry URLs with a SAS.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from ..errors import CredentialError, DestinationError, ExporterError, InputError, TransientError
from ..export.destination import PART_STRIDE, DestinationInfo, PartPlacement, UploadLost, UploadState, Verification
from ..export.naming import join_prefix
from ..validation import check_text
from . import keyless_azure  # KEYLESS HOOK (issue 24): Entra ID instead of a connection string
from .common import DestinationKind

FIELD = "destination.connection_string"
CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
PERMISSION_CODES = {
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
    "AuthorizationProtocolMismatch",
}
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}
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
CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.5,
    "connection_timeout": 10,
    "read_timeout": 120,
}
# Verification answers a waiting customer: one quick retry (the storage SDK's own back-off starts at 15 s
# and ignores retry_backoff_factor), so an unreachable endpoint fails in seconds, not minutes.
VERIFY_OPTIONS: dict[str, Any] = {
    **CLIENT_OPTIONS,
    "retry_total": 1,
    "initial_backoff": 1,
    "increment_base": 2,
    "random_jitter_range": 1,
    "connection_timeout": 5,
    "read_timeout": 30,
}


@dataclass(frozen=True)
class BlobCredentials:
    """A parsed connection string. `masked` is the only form ever shown."""

    blob_endpoint: str
    account_name: str
    account_key: str | None = None
    sas: str | None = None
    container: str | None = None  # from a SAS container URL

    @property
    def masked(self) -> str:
        auth = "AccountKey=***" if self.account_key else "SharedAccessSignature=***"
        return f"BlobEndpoint={self.blob_endpoint};AccountName={self.account_name};{auth}"

    @property
    def auth(self) -> str:
        return "account_key" if self.account_key else "sas"


def parse_connection_string(text: Any) -> BlobCredentials:
    """Account key or SAS connection strings (explicit endpoints too) and SAS container URLs."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("is required", field=FIELD)
    text = text.strip()
    if text.lower().startswith(("https://", "http://")):
        return _parse_sas_url(text)
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise InputError(
                "is malformed: expected Key=Value pairs separated by ';' (copy it from the portal's Access keys page)",
                field=FIELD,
            )
        pairs[key.strip().lower()] = value.strip()
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        # The emulator's shorthand names a storage on this machine, not the customer's: refused, not guessed at.
        raise InputError(
            reason="development storage is not a customer destination; use explicit endpoints", field=FIELD
        )
    account = pairs.get("accountname", "")
    key = pairs.get("accountkey")
    sas = pairs.get("sharedaccesssignature")
    endpoint = pairs.get("blobendpoint")
    if not key and not sas:
        raise InputError("is malformed: it has neither an AccountKey nor a SharedAccessSignature", field=FIELD)
    if key:
        if not account:
            raise InputError("is malformed: AccountKey needs an AccountName", field=FIELD)
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("is malformed: AccountKey is not valid Base64", field=FIELD) from None
    if not endpoint:
        if not account:
            raise InputError("is malformed: it needs an AccountName or a BlobEndpoint", field=FIELD)
        protocol = pairs.get("defaultendpointsprotocol", "https")
        suffix = pairs.get("endpointsuffix", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("is malformed: BlobEndpoint is not an http(s) URL", field=FIELD)
    if not account:
        account = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else parts.hostname.split(".")[0]
    return BlobCredentials(endpoint.rstrip("/"), account, account_key=key, sas=sas.lstrip("?") if sas else None)


def _parse_sas_url(text: str) -> BlobCredentials:
    parts = urlsplit(text)
    if not parts.hostname or not parts.query or "sig" not in parse_qs(parts.query):
        raise InputError(
            "is a URL without a SAS token: use a container SAS URL (with ?sv=...&sig=...) or a connection string",
            field=FIELD,
        )
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise InputError("is a SAS URL without a container name", field=FIELD)
    container = segments[-1]
    base_path = "/".join(segments[:-1])
    endpoint = f"{parts.scheme}://{parts.netloc}" + (f"/{base_path}" if base_path else "")
    account = segments[0] if base_path else parts.hostname.split(".")[0]
    return BlobCredentials(endpoint, account, sas=parts.query, container=container)


def check_container_name(name: Any, field: str = "destination.container") -> str:
    """Azure's container naming rule (S3 and GCS buckets have their own, in s3.py and gcs.py)."""
    if not isinstance(name, str) or not CONTAINER_RE.fullmatch(name):  # `$` alone lets "name\n" through
        raise InputError("must be a container name: 3-63 lowercase letters, digits and single hyphens", field=field)
    return name


def _error_code(exc: HttpResponseError) -> str:
    """The storage error code ('AuthorizationFailure', ...), from the SDK or the response header."""
    code = (
        getattr(exc, "error_code", None)
        or (getattr(exc.response, "headers", {}).get("x-ms-error-code") if exc.response is not None else None)
        or ""
    )
    return str(getattr(code, "value", code))  # the SDK gives a StorageErrorCode enum


def _is_permission_refusal(exc: BaseException) -> bool:
    """Valid credentials that lack a permission (as opposed to wrong or expired ones)."""
    return isinstance(exc, HttpResponseError) and exc.status_code in (401, 403) and _error_code(exc) in PERMISSION_CODES


def classify(exc: BaseException, container: str) -> ExporterError:
    """Turn an SDK failure into our error types, in words a customer can act on."""
    if isinstance(exc, ExporterError):
        return exc
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        code = _error_code(exc)
        if status in (401, 403):
            if code in PERMISSION_CODES:
                return CredentialError(permission_refused(container, code))
            if code == "AuthorizationSourceIPMismatch":
                return CredentialError("the storage account's firewall refuses our IP addresses; allowlist them")
            return CredentialError(
                f"the storage account refused the credentials: wrong account key, or an expired or invalid SAS ({code or status})"
            )
        if status == 404 and code == "ContainerNotFound":
            return DestinationError(f"container {container!r} does not exist in the storage account")
        if status == 404 and code in ACCOUNT_NOT_FOUND_CODES:
            return DestinationError("the storage account was not found: check the account name or endpoint")
        if status in TRANSIENT_STATUSES or status >= 500:
            return TransientError(f"the storage service is unavailable or throttling ({status} {code})".strip())
        return DestinationError(_refusal(status, code))
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TransientError("could not reach the storage endpoint")
    if isinstance(exc, AzureError):
        return TransientError(f"storage request failed ({type(exc).__name__})")
    return TransientError(f"unexpected failure writing to the destination ({type(exc).__name__})")


def permission_refused(container: str, code: str) -> str:
    """Valid credentials without the permission; KEYLESS HOOK (issue 24): says the role an Entra sign-in needs."""
    return (
        f"the credentials are valid but lack the permission to write to container {container!r} ({code}): give a key or SAS "
        f"that may, or, signed in by Entra ID, grant the platform's application {keyless_azure.ROLE!r} on the container"
    )


def _refusal(status: int, code: str) -> str:
    """A refusal retries cannot fix, as a sentence a customer can act on; the code stays as a detail for support."""
    sentence = (
        REFUSED_BY_CODE.get(code)
        or REFUSED_BY_STATUS.get(status)
        or (f"the storage service refused the request with HTTP status {status}; check the destination's settings")
    )
    return f"{sentence} (error code {code})" if code else sentence


def block_id(index: int) -> str:
    """Deterministic and equal-length, as the service requires within one blob."""
    return base64.b64encode(f"block-{index:08d}".encode()).decode()


def check_staged(blob: BlobClient, staged: Sequence[int], lists: str) -> None:
    """UploadLost unless blocks `staged` (indexes) are all in the blob's block `lists` ("uncommitted" or "all")."""
    try:
        committed, uncommitted = blob.get_block_list(lists)
    except ResourceNotFoundError:
        raise UploadLost() from None
    kept = {block.id for block in [*committed, *uncommitted]}
    if any(block_id(i) not in kept for i in staged):
        raise UploadLost()


class AzureBlobDestination:
    """A customer's container, reached with their credentials (implements exporter.export.destination.Destination)."""

    def __init__(self, connection_string: str, container: str | None, prefix: str):
        if keyless_azure.is_keyless(connection_string):  # KEYLESS HOOK (issue 24)
            self._keyless(keyless_azure.parse(connection_string), container, prefix)
            return
        self.credentials: Any = parse_connection_string(connection_string)
        name = self.credentials.container or container
        if self.credentials.container and container and container != self.credentials.container:
            raise InputError("does not match the container of the SAS URL", field="destination.container")
        self.container_name = check_container_name(name)
        self.prefix = prefix or ""
        creds = self.credentials
        credential: Any = (
            {"account_name": creds.account_name, "account_key": creds.account_key} if creds.account_key else creds.sas
        )
        self._credential = credential
        self.client = ContainerClient(creds.blob_endpoint, self.container_name, credential=credential, **CLIENT_OPTIONS)

    def _keyless(self, account: keyless_azure.EntraBlob, container: str | None, prefix: str) -> None:
        """KEYLESS HOOK (issue 24): the platform's application, signed in to the customer's tenant."""
        self.credentials = account
        self.container_name = check_container_name(container)
        self.prefix = prefix or ""
        self._credential = keyless_azure.credential(account.tenant_id)
        self.client = ContainerClient(
            account.blob_endpoint, self.container_name, credential=self._credential, **CLIENT_OPTIONS
        )

    def describe(self) -> DestinationInfo:
        return DestinationInfo(container=self.container_name, masked=self.credentials.masked)

    def verify(self, test_file_name: str) -> Verification:
        """Write a small test file under the prefix and try to delete it (docs/architecture.md, "Verify authentication")."""
        path = join_prefix(self.prefix, test_file_name)
        verify_client = ContainerClient(
            self.credentials.blob_endpoint, self.container_name, credential=self._credential, **VERIFY_OPTIONS
        )
        blob = verify_client.get_blob_client(path)
        try:
            blob.upload_blob(b"Verification file written by the event export. Safe to delete.\n", overwrite=True)
        except ServiceRequestError:
            raise DestinationError(
                f"could not reach {self.credentials.blob_endpoint}: the storage account name or endpoint is wrong, or unreachable"
            ) from None
        except Exception as exc:  # noqa: BLE001 - classified below, never re-raised with SDK text
            if _is_permission_refusal(exc):
                raise CredentialError(permission_refused(self.container_name, "no write permission")) from None
            raise classify(exc, self.container_name) from None
        deleted = True
        note = None
        try:
            blob.delete_blob()
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                deleted = False
                note = "the credentials may not delete objects, so the test file stays in the container; you may delete it by hand"
            else:
                raise classify(exc, self.container_name) from None
        return Verification(test_file=path, deleted=deleted, note=note)

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        try:
            self.client.get_blob_client(path).stage_block(block_id(index), data, length=len(data))
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.container_name) from None
        return UploadState()  # block ids are the names: nothing else to keep

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        """The service keeps uncommitted blocks for a week: check the staged blocks are still there."""
        try:
            check_staged(self.client.get_blob_client(path), staged, "uncommitted")
        except UploadLost:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.container_name) from None

    def abandon_blocks(self, path: str) -> None:
        """Nothing to do: the service drops uncommitted blocks after a week, and a retry restages the same ids."""

    def commit_blocks(self, path: str, count: int) -> None:
        self._commit(path, range(count))

    def _commit(self, path: str, indexes: Iterable[int]) -> None:
        try:
            self.client.get_blob_client(path).commit_block_list(
                [BlobBlock(block_id(i)) for i in indexes],
                content_settings=ContentSettings(content_type="text/csv; charset=utf-8"),
            )
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.container_name) from None

    # -------------------------------------------------------------- split windows

    def begin_split(self, path: str) -> UploadState | None:
        return UploadState()  # the parts' block ids are the names

    def place_part(self, path: str, part: int) -> PartPlacement:
        """Every part stages into the file itself, under block ids of its own range."""
        return PartPlacement(path, part * PART_STRIDE)

    def commit_parts(self, path: str, state: UploadState, blocks: Sequence[int]) -> None:
        """One commit of every part's blocks, in order (a repeated commit lists the same, now committed, blocks)."""
        self._commit(path, [p * PART_STRIDE + j for p, count in enumerate(blocks) for j in range(count)])


def _check_connection_string(value: Any, field: str = FIELD) -> str:
    """A non-empty string; it is parsed when the destination is opened (verification reports what is wrong)."""
    if not isinstance(value, str) or not value.strip():
        raise InputError("must be a non-empty string", field=field)
    check_text(value, field)
    return value


KIND = DestinationKind(
    name="azure_blob",
    container_field="container",
    check_container=lambda name, field: (
        None if name is None else check_container_name(name, field)
    ),  # a SAS URL may name it
    credential_checks={
        "connection_string": _check_connection_string,
        "account_url": keyless_azure.check_account_url,  # KEYLESS HOOK (issue 24), with tenant_id
        "tenant_id": keyless_azure.check_tenant_id,
    },
    required=(),  # a connection string, or account_url and tenant_id (keyless_azure.check_either)
    to_secret=keyless_azure.to_secret,  # KEYLESS HOOK: the connection string as it is, or the keyless JSON
    from_secret=keyless_azure.from_secret,
    open=AzureBlobDestination,
    shown=keyless_azure.shown,
    check_together=keyless_azure.check_either,  # KEYLESS HOOK (issue 24)
    credential_forms=(frozenset({"connection_string"}), frozenset({"account_url", "tenant_id"})),
)
