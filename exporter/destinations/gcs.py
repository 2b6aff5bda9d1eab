"""Google Cloud Storage destination: body parsing, verification, resumable-upload files.

A file is one resumable upload session. GCS takes its chunks strictly in order, each a multiple of
256 KiB except the last, so a block staged out of order waits for the block before it (memory stays
bounded by the blocks the caller holds: the runner has at most 4 in flight), and the unaligned tail
of a block (< 256 KiB) is carried into the next chunk. The commit sends the last chunk with the
total size, which finalizes the object: nothing is visible under its name before (docs/invariants.md,
I4). A failure, or an export that gives up (`abandon_blocks`), cancels the session; a session
abandoned by a killed worker expires after a week, never visible. A split window's parts are staged in
the service's own storage and relayed into one session in order (exporter/jobs/relay.py).

Authentication is the client's real service-account flow: a JWT signed with the key's private key,
exchanged at the key's `token_uri`. Errors are built from HTTP statuses only, never SDK text.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..errors import CredentialError, DestinationError, ExporterError, InputError, InternalError, TransientError
from ..export.destination import DestinationInfo, PartPlacement, UploadLost, UploadState, Verification
from ..export.naming import join_prefix
from ..validation import check_text
from . import common
from .common import CONTENT_TYPE, DELETE_NOTE, VERIFY_CONTENT, Check, DestinationKind, check_endpoint_url, mask_email
from .keyless_gcs import check_either, check_impersonate, platform_credentials  # KEYLESS HOOK (issue 24)

REQUIRED = ("bucket",)  # no key: the platform's identity (KEYLESS HOOK, issue 24)
KEY_FIELD = "destination.service_account_key"
KEY_REQUIRED = ("type", "client_email", "private_key", "token_uri")
MAX_KEY_BYTES = 16 * 1024
BUCKET_RE = re.compile(r"^(?=.{3,222}$)[a-z0-9][a-z0-9._-]*[a-z0-9]$")
EMAIL_RE = re.compile(r"^[^@\s]{1,128}@[A-Za-z0-9.-]{1,253}$")
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
DEFAULT_ENDPOINT = "https://storage.googleapis.com"

CHUNK = 256 * 1024  # GCS: every chunk but the last is a multiple of this
CHUNK_ATTEMPTS = 4
TIMEOUT = (10, 120)  # connect, read (seconds)
VERIFY_TIMEOUT = (5, 30)
WAIT_FOR_PREVIOUS_S = 900  # a block waiting this long for its predecessor means the caller skipped one
TRANSIENT_STATUSES = {408, 429, 500, 502, 503, 504}


def _verify_retry() -> Any:
    """Verification answers a waiting customer: a few seconds of retries, so a wrong endpoint fails fast."""
    # google-cloud-storage is imported where it is used: the app's cold start does not pay for it.
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(4).with_delay(initial=0.5, maximum=2)


# ------------------------------------------------------------------ the body


def check_bucket(value: Any, field: str = "destination.bucket") -> str:
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
    return value


def check_service_account_key(value: Any, field: str = KEY_FIELD) -> dict[str, Any]:
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
    def masked(self) -> str:
        """The public part, as JSON: the masked service account email (keyless: whom to impersonate) and the endpoint."""
        if self.service_account_key is None:  # KEYLESS HOOK (issue 24): nothing secret to mask
            return json.dumps({"impersonate": self.impersonate, "endpoint_url": self.endpoint_url})
        return json.dumps({"client_email": mask_email(self.client_email), "endpoint_url": self.endpoint_url})

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or DEFAULT_ENDPOINT

    def google_credentials(self) -> Any:
        """The google-auth service-account credentials (their token flow signs a JWT with the key)."""
        from google.auth import exceptions as auth_exceptions
        from google.oauth2 import service_account

        if self.service_account_key is None:  # KEYLESS HOOK (issue 24): ADC, impersonating when asked
            return platform_credentials(self.impersonate)
        try:
            return service_account.Credentials.from_service_account_info(self.service_account_key, scopes=SCOPES)
        except (ValueError, KeyError, TypeError, auth_exceptions.GoogleAuthError):
            raise InputError("is not a usable service account key", field=KEY_FIELD) from None


def credentials_from_fields(fields: Mapping[str, Any]) -> GcsCredentials:
    """The credential part of a checked body (or of a stored one merged with an update)."""
    check_either(dict(fields), partial=False)  # KEYLESS HOOK (issue 24): a merged update too
    return GcsCredentials(fields.get("service_account_key"), fields.get("endpoint_url"), fields.get("impersonate"))


# ------------------------------------------------------------------ errors


def classify_status(status: int, bucket: str, operation: str | None = None) -> ExporterError:
    """An HTTP status from GCS, in words a customer can act on."""
    if status == 401:
        return CredentialError("Cloud Storage refused the service account's access token (401)")
    if status == 403:
        if operation == "write":
            return CredentialError(
                f"the service account may not write to bucket {bucket!r} "
                "(it needs storage.objects.create, e.g. the Storage Object Creator role)"
            )
        if operation == "delete":
            return CredentialError(
                f"the service account may not delete from bucket {bucket!r} (storage.objects.delete)"
            )
        return CredentialError(f"the service account lacks a permission on bucket {bucket!r} (403)")
    if status in (404, 410) and operation == "chunk":
        return TransientError("the resumable upload session expired or was cancelled; the file is uploaded again")
    if status == 404:
        return DestinationError(f"bucket {bucket!r} does not exist")
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientError(f"Cloud Storage is unavailable or throttling ({status})")
    return DestinationError(f"Cloud Storage refused the request ({status})")


def classify(exc: BaseException, bucket: str, operation: str | None = None) -> ExporterError:
    """Turn a google-cloud-storage, google-auth or requests failure into our error types."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, ExporterError):
        return exc
    if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
        return classify(exc.cause, bucket, operation)  # the client's own retries ran out: what failed last
    if isinstance(exc, auth_exceptions.RefreshError):
        if getattr(exc, "retryable", False):
            return TransientError("the service account's token endpoint is unavailable")
        return CredentialError(
            "Google refused the service account key: it is wrong, deleted or disabled (the token request was refused)"
        )
    if isinstance(exc, auth_exceptions.TransportError):
        return TransientError("could not reach the service account's token endpoint")
    if isinstance(exc, api_exceptions.GoogleAPICallError) and exc.code is not None:
        return classify_status(int(exc.code), bucket, operation)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return TransientError("could not reach the Cloud Storage endpoint")
    if isinstance(exc, (requests.RequestException, api_exceptions.RetryError)):
        return TransientError(f"Cloud Storage request failed ({type(exc).__name__})")
    return TransientError(f"unexpected failure writing to the destination ({type(exc).__name__})")


# ------------------------------------------------------------------ the destination


@dataclass
class _Session(common.Upload):
    """One file's resumable upload (`handle` is the session URI): whose turn it is, and what has been sent."""

    next_index: int = 0  # the block whose turn it is to be sent
    offset: int = 0  # bytes GCS has of this file
    carry: bytes = b""  # a block's unaligned tail (< CHUNK), sent with the next chunk
    kept: int = 0  # bytes GCS already had when this invocation took the session over: not sent again
    finalized: bool = False  # the object is complete (found so when taking the session over)


def _url(session: _Session) -> str:
    """The session's upload URL: set when the first block opens the session, before any chunk is sent."""
    if session.handle is None:
        raise InternalError("a chunk was sent before its resumable session was opened")
    return session.handle


class _Finalized(Exception):
    """A status query found the object already finalized (our last chunk landed; its answer was lost)."""


class GcsDestination:
    """A customer's bucket, reached with their service-account key (implements exporter.export.destination.Destination)."""

    def __init__(self, credentials: GcsCredentials, bucket: str, prefix: str):
        self.credentials = credentials
        self.bucket = check_bucket(bucket)
        self.prefix = prefix or ""
        from google.auth.transport.requests import AuthorizedSession
        from google.cloud import storage

        self._google = credentials.google_credentials()
        options = {"api_endpoint": credentials.endpoint_url} if credentials.endpoint_url else None
        project = (credentials.service_account_key or {}).get("project_id") or "<none>"
        self.client = storage.Client(project=project, credentials=self._google, client_options=options)
        self._http = AuthorizedSession(self._google)
        self._sessions: common.Uploads[_Session] = common.Uploads(_Session)

    @classmethod
    def from_secret(cls, secret: str, bucket: str, prefix: str) -> GcsDestination:
        return cls(GcsCredentials.from_secret(secret), bucket, prefix)

    def describe(self) -> DestinationInfo:
        return DestinationInfo(container=self.bucket, masked=self.credentials.masked)

    def _classify(self, exc: BaseException, operation: str | None = None) -> ExporterError:
        return classify(exc, self.bucket, operation)

    # -------------------------------------------------------------- verification

    def verify(self, test_file_name: str) -> Verification:
        """Write a small test file under the prefix and try to delete it (docs/architecture.md)."""
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions

        path = join_prefix(self.prefix, test_file_name)
        blob = self.client.bucket(self.bucket).blob(path)
        retry = _verify_retry()
        try:
            blob.upload_from_string(VERIFY_CONTENT, content_type="text/plain", timeout=VERIFY_TIMEOUT, retry=retry)
        except Exception as exc:  # noqa: BLE001 - classified, never re-raised with SDK text
            cause = exc.cause if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None else exc
            if isinstance(cause, requests.ConnectionError):
                raise DestinationError(
                    f"could not reach {self.credentials.endpoint}: the endpoint is wrong, or unreachable"
                ) from None
            if isinstance(cause, auth_exceptions.TransportError):
                raise DestinationError("could not reach the token_uri of the service account key") from None
            raise self._classify(cause, "write") from None
        try:
            blob.delete(timeout=VERIFY_TIMEOUT, retry=retry)
        except api_exceptions.Forbidden:
            return Verification(test_file=path, deleted=False, note=DELETE_NOTE)
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, "delete") from None
        return Verification(test_file=path, deleted=True)

    # -------------------------------------------------------------- staged blocks

    def _session(self, path: str) -> _Session:
        """The file's upload session, opened by the first block to arrive (the others wait for it)."""

        def create() -> str:
            blob = self.client.bucket(self.bucket).blob(path)
            return blob.create_resumable_upload_session(content_type=CONTENT_TYPE, timeout=TIMEOUT, checksum=None)

        return self._sessions.open(path, create, lambda exc: self._classify(exc, "write"))

    def _fail(self, path: str, session: _Session, exc: BaseException) -> ExporterError:
        """Record the first failure and wake every waiting block; a refusal cancels the session, a transient one keeps it."""
        return common.record_failure(session, self._classify(exc, "write"), lambda: self._cancel(session))

    def _cancel(self, session: _Session) -> None:
        """Best effort (GCS answers 499); a session left behind expires after a week, never visible."""
        if session.handle is None:
            return
        try:
            self._http.delete(session.handle, timeout=VERIFY_TIMEOUT)
        except Exception:  # noqa: BLE001
            pass

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        session = self._session(path)
        with session.turn:
            ready = session.turn.wait_for(
                lambda: session.next_index >= index or session.failure is not None, timeout=WAIT_FOR_PREVIOUS_S
            )
            if session.failure is not None:
                raise copy.copy(session.failure)
            if not ready or session.next_index != index:
                raise self._fail(
                    path,
                    session,
                    TransientError(f"block {index} was staged out of sequence; the file is uploaded again"),
                )
        try:
            # Only this block's thread touches the session now: the others wait for their turn.
            payload = memoryview(session.carry + data if session.carry else data)
            aligned = len(payload) - len(payload) % CHUNK
            # Bytes GCS kept from an invocation that died before recording this block are not sent again.
            done = min(max(session.kept - session.offset, 0), aligned)
            session.offset += done
            if aligned > done:
                self._send(session, bytes(payload[done:aligned]), total=None)  # requests sends bytes only
            session.carry = bytes(payload[aligned:])
        except Exception as exc:  # noqa: BLE001
            raise self._fail(path, session, exc) from None
        with session.turn:
            session.next_index += 1
            session.turn.notify_all()
            return UploadState(handle=_url(session), offset=session.offset, carry=session.carry)

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        """Take over the session `state.handle` after its staged blocks (0, 1, ... in order): ask GCS what it kept."""
        session = _Session(handle=state.handle, next_index=len(staged), offset=state.offset, carry=state.carry)
        try:
            response = self._http.put(state.handle, data=b"", timeout=TIMEOUT, headers={"Content-Range": "bytes */*"})
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, "chunk") from None
        if response.status_code in (200, 201):
            session.finalized = True  # our commit landed; its answer, or the record of it, was lost
        elif response.status_code == 308:
            session.kept = _range_end(response)
            if session.kept < state.offset:
                raise UploadLost()
        elif response.status_code in (404, 410, 499):
            raise UploadLost()
        else:
            raise classify_status(response.status_code, self.bucket, "chunk")
        self._sessions.adopt(path, session)

    def commit_blocks(self, path: str, count: int) -> None:
        session = self._session(path)
        with session.turn:
            if session.failure is not None:
                raise copy.copy(session.failure)
            staged = session.next_index
        if session.finalized:
            self._sessions.pop(path)
            return
        if staged != count:
            raise self._fail(path, session, TransientError("not every block was uploaded; the file is uploaded again"))
        try:
            self._send(session, session.carry, total=session.offset + len(session.carry))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(path, session, exc) from None
        self._sessions.pop(path)

    def abandon_blocks(self, path: str) -> None:
        """The export gave up on this file: cancel its session (nothing was visible)."""
        session = self._sessions.pop(path)
        if session is not None:
            with session.turn:
                if session.failure is None:
                    session.failure = TransientError("the export of this file was abandoned")
                    self._cancel(session)
                session.turn.notify_all()

    # -------------------------------------------------------------- split windows

    def begin_split(self, path: str) -> UploadState | None:
        """Nothing to open yet: the session is opened by the relay, the first block it sends (exporter/jobs/relay.py)."""
        return UploadState()

    def place_part(self, path: str, part: int) -> PartPlacement:
        """Every part stages in the service's own storage: a session takes bytes only in order, and joining
        objects (compose) needs more than the objects.create a customer grants."""
        return PartPlacement(path, 0, relayed=True)

    def commit_parts(self, path: str, state: UploadState, blocks: Sequence[int]) -> None:
        raise InternalError("the parts of a GCS file are relayed into its session, not committed in place")

    # -------------------------------------------------------------- the chunk protocol

    def _send(self, session: _Session, payload: bytes, *, total: int | None) -> None:
        """PUT one chunk at session.offset (the last one when `total` is given), resuming after faults."""
        start, end = session.offset, session.offset + len(payload)
        error: ExporterError | None = None
        for attempt in range(CHUNK_ATTEMPTS):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 4))
                try:
                    kept = self._persisted(session, total)
                except _Finalized:
                    session.offset = end
                    return
                except Exception as exc:  # noqa: BLE001
                    error = self._classify(exc, "chunk")
                    if not isinstance(error, TransientError):
                        raise error from None
                    continue
                if kept >= end:
                    session.offset = end
                    if total is None:
                        return
                    payload = b""  # every byte is there; the object still needs finalizing
                elif kept > start:
                    payload, start = payload[kept - start :], kept
            try:
                response = self._http.put(
                    _url(session),
                    data=payload,
                    timeout=TIMEOUT,
                    headers={"Content-Range": _content_range(start, len(payload), total)},
                )
            except Exception as exc:  # noqa: BLE001
                error = self._classify(exc, "chunk")
                if not isinstance(error, TransientError):
                    raise error from None
                continue
            if total is not None and response.status_code in (200, 201):
                session.offset = end
                return
            if total is None and response.status_code == 308:
                if _range_end(response) >= end:
                    session.offset = end
                    return
                error = TransientError("Cloud Storage kept only part of a chunk")
                continue
            error = classify_status(response.status_code, self.bucket, "chunk")
            if not isinstance(error, TransientError):
                raise error
        raise error or TransientError("could not upload a chunk to Cloud Storage")

    def _persisted(self, session: _Session, total: int | None) -> int:
        """How many bytes GCS has kept, rounded down to a chunk boundary (the only place a chunk may resume)."""
        response = self._http.put(
            _url(session),
            data=b"",
            timeout=TIMEOUT,
            headers={"Content-Range": f"bytes */{total if total is not None else '*'}"},
        )
        if response.status_code in (200, 201):
            raise _Finalized()
        if response.status_code != 308:
            raise classify_status(response.status_code, self.bucket, "chunk")
        kept = _range_end(response)
        return kept if kept == total else kept - kept % CHUNK


def _content_range(start: int, length: int, total: int | None) -> str:
    if length == 0:
        return f"bytes */{total}"
    return f"bytes {start}-{start + length - 1}/{total if total is not None else '*'}"


def _range_end(response: requests.Response) -> int:
    """Bytes persisted, from a 308's `Range: bytes=0-N` (none when the header is absent)."""
    found = re.fullmatch(r"bytes=0-(\d+)", response.headers.get("Range", ""))
    return int(found[1]) + 1 if found else 0


KIND = DestinationKind(
    name="gcs",
    container_field="bucket",
    check_container=check_bucket,
    credential_checks=CREDENTIAL_CHECKS,
    required=REQUIRED,
    to_secret=lambda fields: credentials_from_fields(fields).to_secret(),
    from_secret=json.loads,
    open=lambda secret, bucket, prefix: GcsDestination.from_secret(secret, bucket or "", prefix),
    shown=json.loads,  # the masked client email (or whom to impersonate), the endpoint
    check_together=check_either,  # KEYLESS HOOK (issue 24)
    credential_forms=(frozenset({"service_account_key"}), frozenset({"impersonate"})),
)
