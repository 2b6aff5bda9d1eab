"""Amazon S3 (and S3-compatible) destination: verification and multipart-upload files (its body: s3_body.py).

A file is one multipart upload: block `index` is part `index + 1` (so blocks may be staged
concurrently and out of order), and the commit completes the upload. Nothing is visible under the
file's name until then (docs/invariants.md, I4). A failure aborts the upload, and so does an export
that gives up (`abandon_blocks`); an upload abandoned by a killed worker stays invisible until the
bucket's lifecycle rule (AbortIncompleteMultipartUpload, see README) removes it.

Every failure passes through the bucket's error map (s3_errors.py), and every connection through the
egress policy (exporter/egress.py): the client's connections are pinned to checked addresses.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# boto3 is imported where a client is made or a failure classified: the app's cold start (every
# Functions instance, also those that never export to S3) does not pay for it.
from .. import egress, pinning
from ..errors import ExporterError, InternalError, TransientError
from ..export import destination as protocol
from ..export.destination import (
    PART_STRIDE,
    READ_CHUNK,
    PartPlacement,
    UploadLost,
    UploadState,
    Verification,
)
from ..export.formats import content_type_of  # delivery hook (issue 25): each file's own content type
from ..export.naming import join_prefix
from .common import (
    DELETE_NOTE,
    ENDPOINT_HINT,
    REDIRECTS,
    VERIFY_CONTENT,
    Classify,
    Form,
    refusal_in,
    translated,
)
from .keyless_s3 import role_credentials  # KEYLESS HOOK (issue 24)
from .s3_body import BODY, S3Credentials, check_bucket
from .s3_errors import S3Errors, cannot_list, is_permission_refusal, status_of
from .uploads import Upload, Uploads, record_failure

if TYPE_CHECKING:
    import boto3.session

MAX_PARTS = 10_000  # S3's limit on the parts of one upload
MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum size of every part but the last
# What CompleteMultipartUpload takes back from each UploadPart answer (a checksum when the SDK sent one).
PART_FIELDS = {"ETag", "ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"}

# Exports retry inside an attempt (then the queue redelivers); verification answers a waiting customer.
CLIENT_OPTIONS = {
    "retries": {"max_attempts": 4, "mode": "standard"},
    "connect_timeout": 10,
    "read_timeout": 120,
    "max_pool_connections": 8,
}
# One attempt: a customer's server answers at once, refused or not, so the time taken says nothing of it.
VERIFY_OPTIONS = {"retries": {"total_max_attempts": 1, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 30}
FIELD_ENDPOINT = "destination.endpoint_url"


# ------------------------------------------------------------------ the destination

_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def part_number(index: int) -> int:
    """Block `index` (0, 1, ...) of a file is its part `index + 1` (S3 numbers parts 1 to 10,000)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_PARTS:
        raise InternalError(f"block {index!r} is not an S3 part (blocks 0 to {MAX_PARTS - 1})")
    return index + 1


def _new_client(**kwargs: object) -> Any:  # a botocore S3 client (boto3 has no types here)
    """An S3 client with its own credentials, from one shared session.

    The shared session keeps the loaded service model (a new session costs ~50-100 ms per client);
    sessions are not thread-safe, so clients are created under a lock (the clients themselves are).
    """
    global _session
    with _session_lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


def _egress_rules(request_dict: Any = None, response: Any = None, caught_exception: Any = None, **kwargs: Any) -> Any:
    """A `needs-retry` handler run before the others: a connection the egress policy refused is not retried
    (False wins), and a redirect answer is marked as one already followed, so botocore's region redirector
    leaves it alone (it is refused as a redirect, s3_errors.py); None lets the others decide."""
    if caught_exception is not None and refusal_in(caught_exception) is not None:
        return False
    if request_dict is not None and response is not None and response[0] is not None:
        if response[0].status_code in REDIRECTS:
            request_dict.setdefault("context", {}).setdefault("s3_redirect", {})["redirected"] = True
    return None


@dataclass
class _Upload(Upload):
    """One file's multipart upload (`handle` is its UploadId) and the parts staged so far."""

    parts: dict[int, dict[str, str]] = field(default_factory=dict)


class S3Destination:
    """A customer's bucket, reached with their access key or their role (implements exporter.export.destination.Destination)."""

    def __init__(self, credentials: S3Credentials, bucket: str, prefix: str):
        self.credentials = credentials
        self.bucket = check_bucket(bucket)
        self.prefix = prefix or ""
        self.errors = S3Errors(self.bucket, credentials.region, credentials.endpoint_url)
        self._guard = egress.guard(FIELD_ENDPOINT, **{FIELD_ENDPOINT: credentials.endpoint_url})
        self.client = self._client(CLIENT_OPTIONS)
        self._uploads: Uploads[_Upload] = Uploads(_Upload)

    @classmethod
    def from_secret(cls, secret: str, bucket: str, prefix: str) -> S3Destination:
        return cls(S3Credentials.from_secret(secret), bucket, prefix)

    def describe(self) -> protocol.DestinationInfo:
        return protocol.DestinationInfo(container=self.bucket, masked=self.credentials.masked)

    def _client(self, options: Mapping[str, object]) -> Any:
        creds = self.credentials
        # Path-style for S3-compatible endpoints (most need it); AWS itself picks its own style.
        style = "path" if creds.endpoint_url else "auto"
        from botocore.config import Config

        config = Config(
            **options,
            s3={"addressing_style": style},
            ignore_configured_endpoint_urls=True,
            user_agent_extra="event-export",
            proxies={},  # a customer's endpoint is dialled directly, at the address the egress policy checked
        )
        keys: dict[str, str | None] = {
            "aws_access_key_id": creds.access_key_id,
            "aws_secret_access_key": creds.secret_access_key,
        }
        if creds.role_arn:  # KEYLESS HOOK (issue 24): the role's session credentials, assumed when opened
            with self.errors.mapped("assume"):  # STS is the operator's endpoint, not the customer's: not pinned
                assumed = role_credentials(creds.role_arn, creds.region)
            keys = {
                "aws_access_key_id": assumed.access_key_id,
                "aws_secret_access_key": assumed.secret_access_key,
                "aws_session_token": assumed.session_token,
            }
        client = _new_client(region_name=creds.region, endpoint_url=creds.endpoint_url, config=config, **keys)
        if creds.endpoint_url:
            # botocore's region redirector answers a redirect by asking the same server again, and again: with a
            # customer's endpoint a redirect ends here, refused (s3_errors.py), never followed.
            client.meta.events.register_first("needs-retry.s3", _egress_rules)
        return pinning.pin_botocore(client, self._guard)

    def _known(self, operation: str) -> Classify:
        """The error map's classifier for `operation`: our error, or None for a bug of ours."""
        return lambda exc: self.errors.classify(exc, operation)

    def _fail_with(self, operation: str) -> Callable[[BaseException], ExporterError]:
        """Our error for a failure, or the exception itself re-raised (a bug of ours)."""
        return lambda exc: translated(exc, self._known(operation))

    # -------------------------------------------------------------- verification

    def verify(self, test_file_name: str) -> Verification:
        """Check the endpoint against the egress policy (before any connection), then write a small test file
        under the prefix and try to delete it (docs/architecture.md)."""
        if self.credentials.endpoint_url:
            self._guard.policy.check_url(self.credentials.endpoint_url, FIELD_ENDPOINT)
        path = join_prefix(self.prefix, test_file_name)
        client = self._client(VERIFY_OPTIONS)
        with self.errors.mapped("write", verifying=True):
            client.put_object(Bucket=self.bucket, Key=path, Body=VERIFY_CONTENT, ContentType="text/plain")
        with self.errors.mapped("delete", verifying=True):
            try:
                client.delete_object(Bucket=self.bucket, Key=path)
            except Exception as exc:
                if is_permission_refusal(exc):
                    return Verification(test_file=path, deleted=False, note=DELETE_NOTE)
                raise
        return Verification(test_file=path, deleted=True)

    # -------------------------------------------------------------- reading back (the delivery audit)

    def list_files(self) -> Iterator[protocol.ListedFile]:
        prefix = self.prefix.strip("/") + "/" if self.prefix.strip("/") else ""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield protocol.ListedFile(item["Key"], int(item["Size"]))
        except Exception as exc:  # noqa: BLE001
            raise self._fail_with("read")(exc) from None

    def read_file(self, path: str) -> Iterator[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=path)["Body"]
            yield from body.iter_chunks(READ_CHUNK)
        except Exception as exc:  # noqa: BLE001
            raise self._fail_with("read")(exc) from None

    # -------------------------------------------------------------- staged blocks

    def _upload(self, path: str) -> _Upload:
        """The file's multipart upload, created by the first block to arrive (the others wait for it)."""

        def create() -> str:
            return self.client.create_multipart_upload(Bucket=self.bucket, Key=path, ContentType=content_type_of(path))[
                "UploadId"
            ]

        return self._uploads.open(path, create, self._known("write"))

    def _fail(self, path: str, upload: _Upload, exc: BaseException) -> ExporterError:
        """Record the first failure; a refusal aborts the upload, a transient one keeps it for the next invocation."""
        return record_failure(upload, exc, self._known("write"), lambda: self._abort(path, upload))

    def _abort(self, path: str, upload: _Upload) -> None:
        """Best effort: with refused credentials the abort is refused too, and the upload stays invisible."""
        if upload.handle is None:
            return
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=path, UploadId=upload.handle)
        except Exception:  # noqa: BLE001 - the file is not visible either way
            pass

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        part = part_number(index)
        upload = self._upload(path)
        try:
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=path, UploadId=upload.handle, PartNumber=part, Body=data
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail(path, upload, exc) from None
        with upload.turn:
            if upload.failure is not None:
                raise copy.copy(upload.failure)
            upload.parts[part] = {k: v for k, v in answer.items() if k in PART_FIELDS}
            return UploadState(handle=upload.handle or "")

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        """Adopt the multipart upload `state.handle`: the staged blocks' parts must be there (S3 keeps them until aborted)."""
        upload = _Upload(handle=state.handle)
        try:
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=path, UploadId=state.handle
            )
            for page in pages:
                for part in page.get("Parts", []):
                    upload.parts[part["PartNumber"]] = {k: v for k, v in part.items() if k in PART_FIELDS}
        except Exception as exc:  # noqa: BLE001
            if cannot_list(exc):
                raise UploadLost() from None  # gone, or no s3:ListMultipartUploadParts: the file starts again
            raise self._fail_with("write")(exc) from None
        if any(part_number(i) not in upload.parts for i in staged):
            raise UploadLost()
        self._uploads.adopt(path, upload)

    def commit_blocks(self, path: str, count: int) -> None:
        if not count:
            self._put_empty(path)
            return
        self._complete(path, range(count))

    def _complete(self, path: str, indexes: Sequence[int]) -> None:
        """Complete the file's multipart upload with the parts of these blocks, in order."""
        upload = self._uploads.get(path)
        if upload is None or upload.handle is None:
            raise TransientError("the file's upload was not started; it is uploaded again")
        with upload.turn:
            if upload.failure is not None:
                raise copy.copy(upload.failure)
            numbers = [part_number(i) for i in indexes]
            missing = [n for n in numbers if n not in upload.parts]
            parts = [{"PartNumber": n, **upload.parts[n]} for n in numbers if n in upload.parts]
        if missing:
            raise self._fail(
                path, upload, TransientError(f"part {missing[0]} was not uploaded; the file is uploaded again")
            )
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=path, UploadId=upload.handle, MultipartUpload={"Parts": parts}
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail(path, upload, exc) from None
        self._uploads.pop(path)

    # -------------------------------------------------------------- split windows

    def begin_split(self, path: str) -> UploadState | None:
        """One multipart upload for the whole file: every part's worker stages into it.

        None (the window is exported whole) if the key may not list an upload's parts: the commit
        of a split file needs them (`s3:ListMultipartUploadParts`).
        """
        try:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=path, ContentType=content_type_of(path)
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail_with("write")(exc) from None
        state = UploadState(handle=created["UploadId"])
        try:
            self.client.list_parts(Bucket=self.bucket, Key=path, UploadId=state.handle)
        except Exception as exc:  # noqa: BLE001
            self._abort(path, _Upload(handle=state.handle))
            if cannot_list(exc):
                return None
            raise self._fail_with("write")(exc) from None
        return state

    def place_part(self, split: protocol.SplitFile, part: int) -> PartPlacement:
        """Part numbers of the part's own range; its last block is at least 5 MiB unless it ends the file."""
        return PartPlacement(split.path, part * PART_STRIDE, min_last_block=MIN_PART_BYTES)

    def commit_parts(self, split: protocol.SplitFile, parts: Sequence[protocol.StagedPart]) -> bool:
        """Complete the upload with every part's parts, in order (part numbers may leave gaps)."""
        path = split.path
        indexes = [p * PART_STRIDE + j for p, part in enumerate(parts) for j in range(part.blocks)]
        try:
            self.resume_upload(path, split.upload, indexes)
        except UploadLost:
            if self._exists(path):
                return True  # completed by an earlier commit whose answer was lost
            raise
        self._complete(path, indexes)
        return True

    def _exists(self, path: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=path)
        except Exception as exc:  # noqa: BLE001
            if status_of(exc) == 404:
                return False
            raise self._fail_with("write")(exc) from None
        return True

    def _put_empty(self, path: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=path, Body=b"", ContentType=content_type_of(path))
        except Exception as exc:  # noqa: BLE001
            raise self._fail_with("write")(exc) from None

    def abandon_blocks(self, path: str) -> None:
        """The export gave up on this file: abort its upload (nothing was visible)."""
        upload = self._uploads.pop(path)
        if upload is not None:
            with upload.turn:
                self._abort(path, upload)


# Shown: the region, the masked key id (or the role), the endpoint.
KIND = BODY.kind(
    "s3",
    S3Destination.from_secret,
    credential_forms=(frozenset({"access_key_id", "secret_access_key"}), frozenset({"role_arn"})),
    form=Form(
        "Amazon S3",
        {
            "bucket": "Bucket Name",
            "region": "Region",
            "access_key_id": "Access Key ID",
            "secret_access_key": "Secret Access Key",
            "endpoint_url": "Endpoint URL",
            "role_arn": "Role ARN",  # KEYLESS (issue 24): the console offers this form first
        },
        secret=frozenset({"access_key_id", "secret_access_key"}),  # the API masks the key id too
        hints={"endpoint_url": ENDPOINT_HINT},
    ),
    local="exporter.local.demotargets:S3",
)
