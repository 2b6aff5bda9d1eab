"""Google Cloud Storage destination: verification and resumable-upload files (its body: gcs_body.py).

A file is one resumable upload session. GCS takes its chunks strictly in order, each a multiple of
256 KiB except the last, so a block staged out of order waits for the block before it (memory stays
bounded by the blocks the caller holds: the runner has at most 4 in flight), and the unaligned tail
of a block (< 256 KiB) is carried into the next chunk. The commit sends the last chunk with the
total size, which finalizes the object: nothing is visible under its name before (docs/invariants.md,
I4). A failure, or an export that gives up (`abandon_blocks`), cancels the session; a session
abandoned by a killed worker expires after a week, never visible. A split window's parts are staged in
the service's own storage and relayed into one session in order (gcs_relay.py).

Authentication is the client's real service-account flow: a JWT signed with the key's private key,
exchanged at the key's `token_uri`; or, without a key, the platform's own identity (keyless_gcs.py). Every failure passes through the bucket's error map (gcs_errors.py),
and every connection (to the endpoint, the token_uri, an upload session's URL) through the egress
policy (exporter/egress.py).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import requests

from .. import egress
from ..errors import ExporterError, InternalError, TransientError
from ..export import destination as protocol
from ..export.destination import (
    READ_CHUNK,
    PartPlacement,
    UploadLost,
    UploadState,
    Verification,
)
from ..export.formats import content_type_of  # delivery hook (issue 25): each file's own content type
from ..export.naming import join_prefix
from . import common, uploads
from .common import DELETE_NOTE, VERIFY_CONTENT
from .gcs_body import BODY, TOKEN_FIELD, GcsCredentials, check_bucket
from .gcs_chunk import Chunk
from .gcs_errors import GcsErrors
from .gcs_relay import relay
from .gcs_transport import authorized_session, verify_retry

ENDPOINT_FIELD = "destination.endpoint_url"
CHUNK = 256 * 1024  # GCS: every chunk but the last is a multiple of this
CHUNK_ATTEMPTS = 4
TIMEOUT = (10, 120)  # connect, read (seconds)
VERIFY_TIMEOUT = (5, 30)
WAIT_FOR_PREVIOUS_S = 900  # a block waiting this long for its predecessor means the caller skipped one


# ------------------------------------------------------------------ the destination


@dataclass
class _Session(uploads.Upload):
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

    # The planner's one rule for GCS: a window is exported whole, never split. A split window's parts are
    # relayed, after the last one, through the file's one session: a second pass over every byte at the
    # speed of the upload a one-worker export already overlaps with its encoding, so the split finishes
    # later at any size (both grow with the bytes; docs/benchmarks.md has the figures). A whole window
    # still resumes across invocations. True splits (a plan made before is committed by the relay either way).
    split_windows: ClassVar[bool] = False

    def __init__(self, credentials: GcsCredentials, bucket: str, prefix: str):
        self.credentials = credentials
        self.bucket = check_bucket(bucket)
        self.prefix = prefix or ""
        self.errors = GcsErrors(self.bucket, credentials.endpoint_url)
        from google.cloud import storage

        token_uri = credentials.token_uri  # None without a key (KEYLESS HOOK, issue 24)
        self._guard = egress.guard(ENDPOINT_FIELD, **{ENDPOINT_FIELD: credentials.endpoint_url, TOKEN_FIELD: token_uri})
        self._google = credentials.kept_google_credentials()  # kept between the integration's jobs
        self._http = authorized_session(self._google, self._guard, keyless=token_uri is None)
        options = {"api_endpoint": credentials.endpoint_url} if credentials.endpoint_url else None
        project = (credentials.service_account_key or {}).get("project_id") or "<none>"
        self.client = storage.Client(
            project=project, credentials=self._google, client_options=options, _http=self._http
        )
        # The client's tracing fetches each bucket's metadata in a background thread: a request the customer's key
        # may not be allowed (storage.buckets.get), sent where verification sends one request only. Off.
        self.client._bucket_metadata_cache = None
        self._sessions: uploads.Uploads[_Session] = uploads.Uploads(_Session)

    @classmethod
    def from_secret(cls, secret: str, bucket: str, prefix: str) -> GcsDestination:
        return cls(GcsCredentials.from_secret(secret), bucket, prefix)

    def describe(self) -> protocol.DestinationInfo:
        return protocol.DestinationInfo(container=self.bucket, masked=self.credentials.masked)

    def _classify(self, exc: BaseException, operation: str | None = None) -> ExporterError:
        """Ours, or the exception itself re-raised (a bug of ours)."""
        return common.translated(exc, lambda e: self.errors.classify(e, operation))

    # -------------------------------------------------------------- verification

    def verify(self, test_file_name: str) -> Verification:
        """Check the endpoint and the token_uri against the egress policy (before any connection), then write a
        small test file under the prefix and try to delete it (docs/architecture.md)."""
        from google.api_core import exceptions as api_exceptions

        policy = self._guard.policy
        if self.credentials.endpoint_url:
            policy.check_url(self.credentials.endpoint_url, ENDPOINT_FIELD)
        if self.credentials.token_uri:  # none without a key (KEYLESS HOOK, issue 24)
            policy.check_url(self.credentials.token_uri, TOKEN_FIELD)
        path = join_prefix(self.prefix, test_file_name)
        blob = self.client.bucket(self.bucket).blob(path)
        retry = verify_retry(self.credentials.endpoint_url, self.credentials.token_uri)
        with self.errors.mapped("write", verifying=True):
            blob.upload_from_string(VERIFY_CONTENT, content_type="text/plain", timeout=VERIFY_TIMEOUT, retry=retry)
        with self.errors.mapped("delete", verifying=True):
            try:
                blob.delete(timeout=VERIFY_TIMEOUT, retry=retry)
            except api_exceptions.Forbidden:
                return Verification(test_file=path, deleted=False, note=DELETE_NOTE)
        return Verification(test_file=path, deleted=True)

    # -------------------------------------------------------------- reading back (the delivery audit)

    def list_files(self) -> Iterator[protocol.ListedFile]:
        prefix = self.prefix.strip("/") + "/" if self.prefix.strip("/") else None
        try:
            for blob in self.client.list_blobs(self.bucket, prefix=prefix, timeout=TIMEOUT):
                yield protocol.ListedFile(blob.name, int(blob.size or 0))
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, "read") from None

    def read_file(self, path: str) -> Iterator[bytes]:
        """In ranges of READ_CHUNK bytes, until a range comes back short."""
        blob, start = self.client.bucket(self.bucket).blob(path), 0
        try:
            while True:
                piece = blob.download_as_bytes(start=start, end=start + READ_CHUNK - 1, timeout=TIMEOUT, checksum=None)
                if piece:
                    yield piece
                if len(piece) < READ_CHUNK:
                    return
                start += len(piece)
        except Exception as exc:  # noqa: BLE001
            raise self._classify(exc, "read") from None

    # -------------------------------------------------------------- staged blocks

    def _session(self, path: str) -> _Session:
        """The file's upload session, opened by the first block to arrive (the others wait for it)."""

        def create() -> str:
            blob = self.client.bucket(self.bucket).blob(path)
            return blob.create_resumable_upload_session(
                content_type=content_type_of(path), timeout=TIMEOUT, checksum=None
            )

        return self._sessions.open(path, create, lambda exc: self.errors.classify(exc, "write"))

    def _fail(self, path: str, session: _Session, exc: BaseException) -> ExporterError:
        """Record the first failure and wake every waiting block; a refusal cancels the session, a transient one keeps it."""
        return uploads.record_failure(
            session, exc, lambda e: self.errors.classify(e, "write"), lambda: self._cancel(session)
        )

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
        # Only this block's thread touches the session now: the others wait for their turn. The carry and the
        # block are sent as they are, one after the other: no byte of the block is copied (gcs_chunk.py).
        payload = Chunk.of(session.carry, data)
        try:
            aligned = len(payload) - len(payload) % CHUNK
            # Bytes GCS kept from an invocation that died before recording this block are not sent again.
            done = min(max(session.kept - session.offset, 0), aligned)
            session.offset += done
            if aligned > done:
                self._send(session, payload.cut(done, aligned), total=None)
            session.carry = payload.tail(aligned)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(path, session, exc) from None
        finally:
            payload.release()  # the encoder writes into the block's buffer again once it is staged
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
            raise self.errors.status(response.status_code, "chunk")
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
            self._send(session, Chunk.of(session.carry), total=session.offset + len(session.carry))
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
        """None: a GCS window is exported whole (`split_windows`, the one rule). Split: nothing to open yet, the
        session is opened by the relay, the first block it sends (gcs_relay.py)."""
        return UploadState() if self.split_windows else None

    def place_part(self, split: protocol.SplitFile, part: int) -> PartPlacement:
        """Every part stages in the service's own storage: a session takes bytes only in order, and joining
        objects (compose) needs more than the objects.create a customer grants."""
        return PartPlacement(split.staged(part), 0, own_object=True, staging=split.staging)

    def commit_parts(self, split: protocol.SplitFile, parts: Sequence[protocol.StagedPart]) -> bool:
        """Relay the staged parts, in order, into the file's session; False: time ran out (a follow-up continues)."""
        sources = [(split.staged(p), part.bytes) for p, part in enumerate(parts)]
        return relay(split.staging, self, split.path, sources, split.joining, split.out_of_time)

    # -------------------------------------------------------------- the chunk protocol

    def _send(self, session: _Session, payload: Chunk, *, total: int | None) -> None:
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
                    payload = Chunk.of()  # every byte is there; the object still needs finalizing
                elif kept > start:
                    payload, start = payload.cut(kept - start, len(payload)), kept
            try:
                response = self._http.put(
                    _url(session),
                    data=payload.body(),
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
            error = self.errors.status(response.status_code, "chunk")
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
            raise self.errors.status(response.status_code, "chunk")
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


# Shown: the masked client email (or whom to impersonate), the endpoint.
KIND = BODY.kind(
    "gcs",
    GcsDestination.from_secret,
    credential_forms=(frozenset({"service_account_key"}), frozenset({"impersonate"})),
    form=common.Form(
        "Google Cloud Storage",
        {
            "bucket": "Bucket Name",
            "service_account_key": "Service Account Key (JSON)",
            "endpoint_url": "Endpoint URL",
            "impersonate": "Service Account to Impersonate",  # KEYLESS (issue 24): optional on the keyless form
        },
        secret=frozenset({"service_account_key"}),
        json=frozenset({"service_account_key"}),
        hints={
            "service_account_key": "Paste the whole JSON key file of the service account.",
            "endpoint_url": common.ENDPOINT_HINT,
        },
    ),
    local="exporter.local.demotargets:GCS",
)
