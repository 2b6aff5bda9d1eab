"""Amazon S3 (and S3-compatible) destination: body parsing, verification, multipart-upload files.

A file is one multipart upload: block `index` is part `index + 1` (so blocks may be staged
concurrently and out of order), and the commit completes the upload. Nothing is visible under the
file's name until then (docs/invariants.md, I4). A failure aborts the upload, and so does an export
that gives up (`abandon_blocks`); an upload abandoned by a killed worker stays invisible until the
bucket's lifecycle rule (AbortIncompleteMultipartUpload, see README) removes it.

Every failure becomes CredentialError / DestinationError / TransientError here, with a message
built from the status and the S3 error code only, never from SDK text.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# boto3 is imported where a client is made or a failure classified: the app's cold start (every
# Functions instance, also those that never export to S3) does not pay for it.
if TYPE_CHECKING:
    from botocore.exceptions import ClientError

from ..errors import CredentialError, DestinationError, ExporterError, InputError, InternalError, TransientError
from ..export.destination import PART_STRIDE, DestinationInfo, PartPlacement, UploadLost, UploadState, Verification
from ..export.naming import join_prefix
from .common import (
    CONTENT_TYPE,
    DELETE_NOTE,
    VERIFY_CONTENT,
    Check,
    DestinationKind,
    Upload,
    Uploads,
    check_endpoint_url,
    check_token,
    mask_middle,
    record_failure,
)
from .keyless_s3 import check_either, check_role_arn, role_credentials  # KEYLESS HOOK (issue 24)

REQUIRED = ("bucket", "region")  # and an access key, or a role (keyless_s3.check_either)
MAX_PARTS = 10_000  # S3's limit on the parts of one upload
MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum size of every part but the last
BUCKET_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9][a-z0-9.-]*[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
CODE_RE = re.compile(r"^[A-Za-z0-9.]{1,64}$")
# What CompleteMultipartUpload takes back from each UploadPart answer (a checksum when the SDK sent one).
PART_FIELDS = {"ETag", "ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"}

BAD_KEY = {
    "InvalidAccessKeyId": "S3 does not know the access key id: it is wrong, deleted or deactivated",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "InvalidToken": "the credentials are invalid or expired",
    "ExpiredToken": "the credentials have expired",
    "TokenRefreshRequired": "the credentials have expired",
    "AccountProblem": "the AWS account behind the credentials cannot be used (AccountProblem)",
    "AllAccessDisabled": "all access to the bucket is disabled (AllAccessDisabled)",
}
PERMISSION = {"AccessDenied", "AccessDeniedException"}
WRONG_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "RequestTimeTooSkewed",
    "OperationAborted",
    "NoSuchUpload",
}
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}
PERMISSION_FOR = {"write": "write to", "delete": "delete from"}
ACTION_FOR = {"write": "s3:PutObject", "delete": "s3:DeleteObject"}

# Exports retry inside an attempt (then the queue redelivers); verification answers a waiting customer.
CLIENT_OPTIONS = {
    "retries": {"max_attempts": 4, "mode": "standard"},
    "connect_timeout": 10,
    "read_timeout": 120,
    "max_pool_connections": 8,
}
VERIFY_OPTIONS = {"retries": {"max_attempts": 2, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 30}


# ------------------------------------------------------------------ the body


def check_bucket(value: Any, field: str = "destination.bucket") -> str:
    """S3's bucket naming rule (not Azure's container rule: dots are allowed)."""
    if not isinstance(value, str) or not BUCKET_RE.fullmatch(value) or ".." in value:
        raise InputError("must be an S3 bucket name: 3-63 lowercase letters, digits, '.' and '-'", field=field)
    return value


def check_region(value: Any, field: str = "destination.region") -> str:
    if not isinstance(value, str) or not REGION_RE.fullmatch(value):
        raise InputError("must be an AWS region such as eu-west-1", field=field)
    return value


CREDENTIAL_CHECKS: dict[str, Check] = {
    "region": check_region,
    "access_key_id": lambda v, f: check_token(v, f, "an access key id", 128),
    "secret_access_key": lambda v, f: check_token(v, f, "a secret access key", 256),
    "endpoint_url": check_endpoint_url,
    "role_arn": check_role_arn,  # KEYLESS HOOK (issue 24): S3 by role, no key
}


@dataclass(frozen=True)
class S3Credentials:
    """Everything sealed for an S3 destination. `masked` is the only form ever shown."""

    region: str
    access_key_id: str | None  # None: by role (KEYLESS HOOK, issue 24)
    secret_access_key: str | None = field(repr=False)
    endpoint_url: str | None = None
    role_arn: str | None = None  # KEYLESS HOOK (issue 24): assumed with the account's external id

    @classmethod
    def from_secret(cls, secret: str) -> S3Credentials:
        return credentials_from_fields(json.loads(secret))

    def to_secret(self) -> str:
        return json.dumps(
            {
                "region": self.region,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
                "endpoint_url": self.endpoint_url,
                **({"role_arn": self.role_arn} if self.role_arn else {}),  # KEYLESS HOOK (issue 24)
            }
        )

    @property
    def masked(self) -> str:
        """The public part, as JSON: region, masked key id (or the role: no secret), endpoint."""
        if self.role_arn:  # KEYLESS HOOK (issue 24)
            return json.dumps({"region": self.region, "role_arn": self.role_arn, "endpoint_url": self.endpoint_url})
        return json.dumps(
            {
                "region": self.region,
                "access_key_id": mask_middle(self.access_key_id or ""),
                "endpoint_url": self.endpoint_url,
            }
        )

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"


def credentials_from_fields(fields: Mapping[str, Any]) -> S3Credentials:
    """The credential part of a checked body (or of a stored one merged with an update)."""
    check_either(dict(fields), partial=False)  # KEYLESS HOOK (issue 24): a merged update too
    return S3Credentials(
        fields["region"],
        fields.get("access_key_id"),
        fields.get("secret_access_key"),
        fields.get("endpoint_url"),
        fields.get("role_arn"),
    )


# ------------------------------------------------------------------ errors


def _code(exc: ClientError) -> tuple[int | None, str]:
    """The HTTP status and the S3 error code (kept only if it looks like one: it reaches customers)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(exc.response.get("Error", {}).get("Code") or "")
    # Without an S3 error body botocore names the status as the code: that is no code.
    return status, code if CODE_RE.fullmatch(code) and not code.isdigit() else ""


def _cannot_list(exc: BaseException) -> bool:
    """ListParts refused: the upload is gone (aborted, completed, expired) or the key may not list parts."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    status, code = _code(exc)
    return code == "NoSuchUpload" or code in PERMISSION or status in (403, 404)


def _status_of(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None


def _bucket_region(exc: ClientError) -> str | None:
    region = exc.response.get("Error", {}).get("Region") or (
        exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    )
    return region if isinstance(region, str) and REGION_RE.fullmatch(region) else None


def classify(exc: BaseException, bucket: str, region: str, operation: str | None = None) -> ExporterError:
    """Turn a boto3 failure into our error types, in words a customer can act on."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ExporterError):
        return exc
    if isinstance(exc, ClientError):
        status, code = _code(exc)
        if code in BAD_KEY:
            return CredentialError(BAD_KEY[code])
        if code in PERMISSION or (status == 403 and not code):
            if operation in PERMISSION_FOR:
                return CredentialError(
                    f"the credentials may not {PERMISSION_FOR[operation]} bucket {bucket!r} "
                    f"(no {ACTION_FOR[operation]} permission, or the bucket belongs to another account)"
                )
            return CredentialError(f"the credentials lack a permission on bucket {bucket!r} (AccessDenied)")
        if code == "NoSuchBucket":
            return DestinationError(f"bucket {bucket!r} does not exist")
        if code in WRONG_REGION or status in (301, 307):
            actual = _bucket_region(exc)
            where = (
                f"in region {actual!r}, not {region!r}: set region to {actual!r}"
                if actual
                else f"not in region {region!r}"
            )
            return DestinationError(f"bucket {bucket!r} is {where}")
        if code == "EntityTooSmall":
            return InternalError("a part of the multipart upload was smaller than 5 MiB")
        if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES or (status or 0) >= 500:
            return TransientError(f"S3 is unavailable or throttling ({status} {code})".strip())
        if status in (401, 403):
            return CredentialError(f"S3 refused the credentials ({code or status})")
        return DestinationError(f"S3 refused the request ({status} {code})".strip())
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return TransientError("could not reach the S3 endpoint")
    if isinstance(exc, (ReadTimeoutError, ConnectionClosedError)):
        return TransientError("the S3 endpoint did not answer in time")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"S3 request failed ({type(exc).__name__})")
    return TransientError(f"unexpected failure writing to the destination ({type(exc).__name__})")


# ------------------------------------------------------------------ the destination

_session: Any = None  # a boto3 Session
_session_lock = threading.Lock()


def part_number(index: int) -> int:
    """Block `index` (0, 1, ...) of a file is its part `index + 1` (S3 numbers parts 1 to 10,000)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_PARTS:
        raise InternalError(f"block {index!r} is not an S3 part (blocks 0 to {MAX_PARTS - 1})")
    return index + 1


def _new_client(**kwargs: Any) -> Any:
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


@dataclass
class _Upload(Upload):
    """One file's multipart upload (`handle` is its UploadId) and the parts staged so far."""

    parts: dict[int, dict[str, str]] = field(default_factory=dict)


class S3Destination:
    """A customer's bucket, reached with their access key (implements exporter.export.destination.Destination)."""

    def __init__(self, credentials: S3Credentials, bucket: str, prefix: str):
        self.credentials = credentials
        self.bucket = check_bucket(bucket)
        self.prefix = prefix or ""
        self.client = self._client(CLIENT_OPTIONS)
        self._uploads: Uploads[_Upload] = Uploads(_Upload)

    @classmethod
    def from_secret(cls, secret: str, bucket: str, prefix: str) -> S3Destination:
        return cls(S3Credentials.from_secret(secret), bucket, prefix)

    def describe(self) -> DestinationInfo:
        return DestinationInfo(container=self.bucket, masked=self.credentials.masked)

    def _client(self, options: dict[str, Any]) -> Any:
        creds = self.credentials
        # Path-style for S3-compatible endpoints (most need it); AWS itself picks its own style.
        style = "path" if creds.endpoint_url else "auto"
        from botocore.config import Config

        config = Config(
            **options,
            s3={"addressing_style": style},
            ignore_configured_endpoint_urls=True,
            user_agent_extra="event-export",
        )
        keys: dict[str, Any] = {
            "aws_access_key_id": creds.access_key_id,
            "aws_secret_access_key": creds.secret_access_key,
        }
        if creds.role_arn:  # KEYLESS HOOK (issue 24): the role's session credentials, assumed when opened
            assumed = role_credentials(creds.role_arn, creds.region)
            keys = {
                "aws_access_key_id": assumed.access_key_id,
                "aws_secret_access_key": assumed.secret_access_key,
                "aws_session_token": assumed.session_token,
            }
        return _new_client(region_name=creds.region, endpoint_url=creds.endpoint_url, config=config, **keys)

    def _classify(self, exc: BaseException, operation: str | None = None) -> ExporterError:
        return classify(exc, self.bucket, self.credentials.region, operation)

    # -------------------------------------------------------------- verification

    def verify(self, test_file_name: str) -> Verification:
        """Write a small test file under the prefix and try to delete it (docs/architecture.md)."""
        from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

        path = join_prefix(self.prefix, test_file_name)
        client = self._client(VERIFY_OPTIONS)
        try:
            client.put_object(Bucket=self.bucket, Key=path, Body=VERIFY_CONTENT, ContentType="text/plain")
        except (EndpointConnectionError, ConnectTimeoutError):
            raise DestinationError(
                f"could not reach {self.credentials.endpoint}: the endpoint or region is wrong, or unreachable"
            ) from None
        except Exception as exc:  # noqa: BLE001 - classified, never re-raised with SDK text
            raise self._classify(exc, "write") from None
        try:
            client.delete_object(Bucket=self.bucket, Key=path)
        except ClientError as exc:
            if _code(exc)[1] in PERMISSION or _code(exc)[0] == 403:
                return Verification(test_file=path, deleted=False, note=DELETE_NOTE)
            raise self._classify(exc, "delete") from None
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, "delete") from None
        return Verification(test_file=path, deleted=True)

    # -------------------------------------------------------------- staged blocks

    def _upload(self, path: str) -> _Upload:
        """The file's multipart upload, created by the first block to arrive (the others wait for it)."""

        def create() -> str:
            return self.client.create_multipart_upload(Bucket=self.bucket, Key=path, ContentType=CONTENT_TYPE)[
                "UploadId"
            ]

        return self._uploads.open(path, create, lambda exc: self._classify(exc, "write"))

    def _fail(self, path: str, upload: _Upload, exc: BaseException) -> ExporterError:
        """Record the first failure; a refusal aborts the upload, a transient one keeps it for the next invocation."""
        return record_failure(upload, self._classify(exc, "write"), lambda: self._abort(path, upload))

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
            if _cannot_list(exc):
                raise UploadLost() from None  # gone, or no s3:ListMultipartUploadParts: the file starts again
            raise self._classify(exc, "write") from None
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
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=path, ContentType=CONTENT_TYPE)
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, "write") from None
        state = UploadState(handle=created["UploadId"])
        try:
            self.client.list_parts(Bucket=self.bucket, Key=path, UploadId=state.handle)
        except Exception as exc:  # noqa: BLE001
            self._abort(path, _Upload(handle=state.handle))
            if _cannot_list(exc):
                return None
            raise self._classify(exc, "write") from None
        return state

    def place_part(self, path: str, part: int) -> PartPlacement:
        """Part numbers of the part's own range; its last block is at least 5 MiB unless it ends the file."""
        return PartPlacement(path, part * PART_STRIDE, min_last_block=MIN_PART_BYTES)

    def commit_parts(self, path: str, state: UploadState, blocks: Sequence[int]) -> None:
        """Complete the upload with every part's parts, in order (part numbers may leave gaps)."""
        indexes = [p * PART_STRIDE + j for p, count in enumerate(blocks) for j in range(count)]
        try:
            self.resume_upload(path, state, indexes)
        except UploadLost:
            if self._exists(path):
                return  # completed by an earlier commit whose answer was lost
            raise
        self._complete(path, indexes)

    def _exists(self, path: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=path)
        except Exception as exc:  # noqa: BLE001
            if _status_of(exc) == 404:
                return False
            raise self._classify(exc, "write") from None
        return True

    def _put_empty(self, path: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=path, Body=b"", ContentType=CONTENT_TYPE)
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, "write") from None

    def abandon_blocks(self, path: str) -> None:
        """The export gave up on this file: abort its upload (nothing was visible)."""
        upload = self._uploads.pop(path)
        if upload is not None:
            with upload.turn:
                self._abort(path, upload)


KIND = DestinationKind(
    name="s3",
    container_field="bucket",
    check_container=check_bucket,
    credential_checks=CREDENTIAL_CHECKS,
    required=REQUIRED,
    to_secret=lambda fields: credentials_from_fields(fields).to_secret(),
    from_secret=json.loads,
    open=lambda secret, bucket, prefix: S3Destination.from_secret(secret, bucket or "", prefix),
    shown=json.loads,  # region, the masked key id (or the role), the endpoint
    check_together=check_either,  # KEYLESS HOOK (issue 24)
    credential_forms=(frozenset({"access_key_id", "secret_access_key"}), frozenset({"role_arn"})),
)
