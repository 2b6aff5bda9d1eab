"""Azure Blob Storage destination: connection-string parsing, verification, staged-block files.

Every failure passes through the container's error map (azure_errors.py), and every connection through
the egress policy (exporter/egress.py): the client's transport dials the checked address only.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from .. import egress, pinning
from ..errors import CredentialError, InputError
from ..export import destination as protocol
from ..export.destination import (
    PART_STRIDE,
    PartPlacement,
    UploadLost,
    UploadState,
    Verification,
)
from ..export.formats import content_type_of
from ..export.naming import join_prefix
from ..validation import check_text
from . import keyless_azure  # KEYLESS HOOK (issue 24): Entra ID instead of a connection string
from .azure_errors import ACCOUNT_URL_FIELD, FIELD, AzureErrors, is_permission_refusal, permission_refused
from .common import DestinationKind, Form

CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")


class ClientOptions(TypedDict, total=False):
    """The storage SDK's transport and retry settings we set (keywords of its clients)."""

    permit_redirects: bool
    retry_total: int
    retry_backoff_factor: float
    initial_backoff: int
    increment_base: int
    random_jitter_range: int
    connection_timeout: int
    read_timeout: int


CLIENT_OPTIONS: ClientOptions = {
    "permit_redirects": False,  # the egress policy: a redirect is refused, never followed
    "retry_total": 3,
    "retry_backoff_factor": 0.5,
    "connection_timeout": 10,
    "read_timeout": 120,
}
# Verification answers a waiting customer: no retry (the storage SDK's own back-off starts at 15 s and ignores
# retry_backoff_factor), so an unreachable endpoint fails in seconds, and the time taken says nothing of
# what listens there.
VERIFY_OPTIONS: ClientOptions = {
    **CLIENT_OPTIONS,
    "retry_total": 0,
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


def parse_connection_string(text: object) -> BlobCredentials:
    """Account key or SAS connection strings (explicit endpoints too) and SAS container URLs."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("is required", field=FIELD)
    text = text.strip()
    if text.lower().startswith(("https://", "http://")):
        return _parse_sas_url(text)
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise InputError(
                "is malformed: expected Key=Value pairs separated by ';' (copy it from the portal's Access keys page)",
                field=FIELD,
            )
        pairs[name.strip().lower()] = value.strip()
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
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InputError("is malformed: BlobEndpoint is not an http(s) URL", field=FIELD) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("is malformed: BlobEndpoint is not an http(s) URL", field=FIELD)
    if not account:
        account = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else parts.hostname.split(".")[0]
    return BlobCredentials(endpoint.rstrip("/"), account, account_key=key, sas=sas.lstrip("?") if sas else None)


def _parse_sas_url(text: str) -> BlobCredentials:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InputError("is a malformed URL: check the host and the port", field=FIELD) from None
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


def check_container_name(name: object, field: str = "destination.container") -> str:
    """Azure's container naming rule (S3 and GCS buckets have their own, in s3.py and gcs.py)."""
    if not isinstance(name, str) or not CONTAINER_RE.fullmatch(name):  # `$` alone lets "name\n" through
        raise InputError("must be a container name: 3-63 lowercase letters, digits and single hyphens", field=field)
    return name


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


def _credential(creds: BlobCredentials | keyless_azure.EntraBlob) -> str | dict[str, str] | TokenCredential | None:
    """What the storage SDK signs with: the account key, the SAS, or (KEYLESS HOOK, issue 24) the platform's
    application signed in to the customer's tenant."""
    if isinstance(creds, keyless_azure.EntraBlob):
        return keyless_azure.credential(creds.tenant_id)
    return {"account_name": creds.account_name, "account_key": creds.account_key} if creds.account_key else creds.sas


class AzureBlobDestination:
    """A customer's container, reached with their credentials (implements exporter.export.destination.Destination)."""

    def __init__(self, connection_string: str, container: str | None, prefix: str):
        # KEYLESS HOOK (issue 24): the keyless body's account URL is the customer's address, as a BlobEndpoint is:
        # the same egress check and pinning, under its own field.
        keyless = keyless_azure.is_keyless(connection_string)
        self.credentials: BlobCredentials | keyless_azure.EntraBlob = (
            keyless_azure.parse(connection_string) if keyless else parse_connection_string(connection_string)
        )
        self.field = ACCOUNT_URL_FIELD if keyless else FIELD
        name = self.credentials.container or container
        if self.credentials.container and container and container != self.credentials.container:
            raise InputError("does not match the container of the SAS URL", field="destination.container")
        self.container_name = check_container_name(name)
        self.prefix = prefix or ""
        self.errors = AzureErrors(self.container_name, self.credentials.blob_endpoint, self.field)
        self._guard = egress.guard(self.field, **{self.field: self.credentials.blob_endpoint})
        self._credential = _credential(self.credentials)
        self.client = self._client(CLIENT_OPTIONS)

    def _client(self, options: ClientOptions) -> ContainerClient:
        """A client whose connections are pinned by the egress policy (its own transport and session)."""
        transport = RequestsTransport(
            session=pinning.pinned_session(self._guard),
            session_owner=False,
            connection_timeout=options["connection_timeout"],
            read_timeout=options["read_timeout"],
        )
        return ContainerClient(
            self.credentials.blob_endpoint,
            self.container_name,
            credential=self._credential,
            transport=transport,
            **options,
        )

    def describe(self) -> protocol.DestinationInfo:
        return protocol.DestinationInfo(container=self.container_name, masked=self.credentials.masked)

    def verify(self, test_file_name: str) -> Verification:
        """Check the BlobEndpoint (or the account URL) against the egress policy (before any connection), then write
        a small test file under the prefix and try to delete it (docs/architecture.md, "Verify authentication")."""
        self._guard.policy.check_url(self.credentials.blob_endpoint, self.field)
        path = join_prefix(self.prefix, test_file_name)
        blob = self._client(VERIFY_OPTIONS).get_blob_client(path)
        with self.errors.mapped(verifying=True):
            try:
                blob.upload_blob(b"Verification file written by the event export. Safe to delete.\n", overwrite=True)
            except Exception as exc:
                if is_permission_refusal(exc):
                    raise CredentialError(permission_refused(self.container_name, "no write permission")) from None
                raise
        with self.errors.mapped(verifying=True):
            try:
                blob.delete_blob()
            except HttpResponseError as exc:
                if exc.status_code not in (401, 403):
                    raise
                note = "the credentials may not delete objects, so the test file stays in the container; you may delete it by hand"
                return Verification(test_file=path, deleted=False, note=note)
        return Verification(test_file=path, deleted=True)

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        with self.errors.mapped():
            self.client.get_blob_client(path).stage_block(block_id(index), data, length=len(data))
        return UploadState()  # block ids are the names: nothing else to keep

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        """The service keeps uncommitted blocks for a week: check the staged blocks are still there."""
        with self.errors.mapped():
            check_staged(self.client.get_blob_client(path), staged, "uncommitted")

    def abandon_blocks(self, path: str) -> None:
        """Nothing to do: the service drops uncommitted blocks after a week, and a retry restages the same ids."""

    def commit_blocks(self, path: str, count: int) -> None:
        self._commit(path, range(count))

    def _commit(self, path: str, indexes: Iterable[int]) -> None:
        with self.errors.mapped():
            self.client.get_blob_client(path).commit_block_list(
                [BlobBlock(block_id(i)) for i in indexes],
                content_settings=ContentSettings(content_type=content_type_of(path)),  # delivery hook (issue 25)
            )

    # -------------------------------------------------------------- reading back (the delivery audit)

    def list_files(self) -> Iterator[protocol.ListedFile]:
        prefix = self.prefix.strip("/") + "/" if self.prefix.strip("/") else None
        with self.errors.mapped():
            for blob in self.client.list_blobs(name_starts_with=prefix):
                yield protocol.ListedFile(blob.name, blob.size)

    def read_file(self, path: str) -> Iterator[bytes]:
        with self.errors.mapped():
            yield from self.client.download_blob(path, max_concurrency=1).chunks()

    # -------------------------------------------------------------- split windows

    def begin_split(self, path: str) -> UploadState | None:
        return UploadState()  # the parts' block ids are the names

    def place_part(self, split: protocol.SplitFile, part: int) -> PartPlacement:
        """Every part stages into the file itself, under block ids of its own range."""
        return PartPlacement(split.path, part * PART_STRIDE)

    def commit_parts(self, split: protocol.SplitFile, parts: Sequence[protocol.StagedPart]) -> bool:
        """One commit of every part's blocks, in order (a repeated commit lists the same, now committed, blocks)."""
        self._commit(split.path, [p * PART_STRIDE + j for p, part in enumerate(parts) for j in range(part.blocks)])
        return True


def _check_connection_string(value: object, field: str = FIELD) -> str:
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
    form=Form(
        "Microsoft Azure Blob Storage",
        {
            "connection_string": "Connection String",
            "container": "Container Name",
            "account_url": "Account URL",  # KEYLESS (issue 24): the console offers this form first
            "tenant_id": "Tenant ID",
        },
        secret=frozenset({"connection_string"}),
        hints={"connection_string": "From the storage account's Access keys page, or a SAS connection string."},
        prefix_label="Blob Path Prefix",
    ),
    local="exporter.local.demotargets:AZURE_BLOB",
)
