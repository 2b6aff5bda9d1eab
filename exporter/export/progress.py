"""A window's export progress, kept durably so another invocation continues it (docs/architecture.md, resumable windows).

One Table entity per (integration, window) in the runs table, in a partition of its own (the run
history's listing never sees it): the file, how many blocks are staged, where the UCD read stands
after the last of them, the rows and bytes so far, and the destination's upload state (its handle,
an S3 UploadId or a GCS session URI, sealed like a credential: a session URI is a bearer secret).

Writes are ETag-conditional and never go backwards: two invocations of one window (a duplicate
delivery) stage the same bytes under the same block indexes, and the record keeps whichever is
further, always one invocation's whole state (its blocks, position and upload together).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode
from azure.storage.blob import ContainerClient

from ..concurrency import retry_on_conflict
from ..secrets import SecretBox
from ..ucd.reader import ReadPosition
from .destination import UploadState

CARRY_PART = 60 * 1024  # a binary Table property holds at most 64 KiB


@dataclass(frozen=True)
class WindowProgress:
    """Blocks 0 .. blocks-1 of `path` are staged; the read continues at `position` (None: the window's start)."""

    path: str
    blocks: int = 0
    position: ReadPosition | None = None
    rows: int = 0
    bytes: int = 0
    upload: UploadState = UploadState()
    complete: bool = False  # a part of a split window: every block of it is staged
    # A file with a manifest: the SHA-256 state after these blocks (exporter/export/sha256.py).
    digest: builtins.bytes = b""


class CannotContinue(Exception):
    """The recorded blocks of a file cannot be continued by this export (a block's note is gone, a saved
    hash state cannot be restored here): the file starts again from its first block."""


class Unread(Enum):
    """No ETag known: the record may or may not exist, so it is read before it is written."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


class _Stale(Exception):
    """The record changed since it was read: read it again."""


class ProgressRepo:
    """Window progress records, in their own partition of the runs table."""

    def __init__(self, table: TableClient, box: SecretBox):
        self.table = table
        self.box = box

    def get(
        self, account: str, integration_id: str, window_start: int, part: int | None = None
    ) -> WindowProgress | None:
        """The recorded progress of a window (or of one part of a split window), or None."""
        found = self.read(account, integration_id, window_start, part)
        return found[0] if found else None

    def advance(
        self,
        account: str,
        integration_id: str,
        window_start: int,
        progress: WindowProgress,
        part: int | None = None,
        etag: str | None | Unread = UNREAD,
    ) -> str | None:
        """Record `progress` unless the record is already as far (another invocation of the same window).

        `etag` is the record as this invocation last read or wrote it (None: there was none): if nobody
        wrote since, one conditional write does (a block costs one Table call); otherwise the record is
        read and compared. Answers the record's ETag now.
        """
        entity = self._entity(account, integration_id, _row(window_start, part), progress)
        try:
            if etag is None:
                return _etag(self.table.create_entity(entity))
            if etag is not UNREAD:
                return _etag(
                    self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=IF_SAME)
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            pass  # another invocation wrote meanwhile: compare with what it wrote

        def attempt(_: object) -> str | None:
            found = self.read(account, integration_id, window_start, part)
            try:
                if found is None:
                    return _etag(self.table.create_entity(entity))
                if found[0].path != progress.path or _further(progress, found[0]):
                    return _etag(
                        self.table.update_entity(
                            entity, mode=UpdateMode.REPLACE, etag=found[1], match_condition=IF_SAME
                        )
                    )
            except (ResourceExistsError, ResourceModifiedError):
                raise _Stale() from None
            return found[1]

        return retry_on_conflict(None, attempt, lambda stale: stale, conflicts=(_Stale,), what="window progress")

    def clear(self, account: str, integration_id: str, window_start: int, part: int | None = None) -> None:
        """Forget a window's (or part's) progress (its file is committed, or its upload is gone)."""
        try:
            self.table.delete_entity(_partition(account, integration_id), _row(window_start, part))
        except ResourceNotFoundError:
            pass

    def read(
        self, account: str, integration_id: str, window_start: int, part: int | None = None
    ) -> tuple[WindowProgress, str] | None:
        """The recorded progress and its ETag, or None."""
        try:
            entity = self.table.get_entity(_partition(account, integration_id), _row(window_start, part))
        except ResourceNotFoundError:
            return None
        return self._from_entity(entity), str(entity.metadata["etag"])

    def _entity(
        self, account: str, integration_id: str, row: str, p: WindowProgress
    ) -> dict[str, str | int | bool | bytes]:
        entity: dict[str, str | int | bool | bytes] = {
            "PartitionKey": _partition(account, integration_id),
            "RowKey": row,
            "path": p.path,
            "blocks": p.blocks,
            "segment": p.position.segment if p.position else "",
            "segment_rows": p.position.rows if p.position else 0,
            "rows": p.rows,
            "bytes": p.bytes,
            "handle": self.box.seal(p.upload.handle) if p.upload.handle else "",
            "offset": p.upload.offset,
            "complete": p.complete,
            "digest": p.digest,
        }
        carry = p.upload.carry
        for i in range(0, len(carry), CARRY_PART):
            entity[f"carry_{i // CARRY_PART}"] = carry[i : i + CARRY_PART]
        return entity

    def _from_entity(self, entity: TableEntity) -> WindowProgress:
        carry = b"".join(bytes(entity[k]) for k in sorted(k for k in entity if k.startswith("carry_")))
        handle = self.box.open(entity["handle"]) if entity.get("handle") else ""
        position = ReadPosition(entity["segment"], int(entity["segment_rows"])) if entity.get("segment") else None
        return WindowProgress(
            path=entity["path"],
            blocks=int(entity["blocks"]),
            position=position,
            rows=int(entity["rows"]),
            bytes=int(entity["bytes"]),
            upload=UploadState(handle, int(entity.get("offset", 0)), carry),
            complete=bool(entity.get("complete", False)),
            digest=bytes(entity.get("digest") or b""),
        )


class BlockNotes(Protocol):
    """What a file's export keeps per block beside its progress record, too large for the record itself
    (a Parquet file's row-group metadata, which its footer needs): written before the block is recorded."""

    def put(self, block: int, data: bytes) -> None: ...

    def get(self, block: int) -> bytes | None:
        """The block's note, or None if there is none (never written, or expired)."""
        ...

    def kept(self) -> int:
        """How many notes are kept in a row from block 0's (one listing, not a read of each)."""
        ...


def staged_prefix(account: str, integration_id: str, window_start: int) -> str:
    """The service's staging blobs of one window (a split window's parts, a Parquet file's notes) start with this."""
    return f"{account}/{integration_id}/{window_start:012d}/"


def notes_prefix(account: str, integration_id: str, window_start: int) -> str:
    """The block notes of one window's file (removed with the window's other staging blobs)."""
    return f"{staged_prefix(account, integration_id, window_start)}notes/"


class StagedNotes:
    """Block notes as small blobs of the service's staging container (its lifecycle rule ends what is left)."""

    def __init__(self, container: ContainerClient, prefix: str):
        self.container = container
        self.prefix = prefix

    def put(self, block: int, data: bytes) -> None:
        """Idempotent: a block's note is a function of the stored data, the same bytes every time."""
        self.container.upload_blob(self._name(block), data, overwrite=True)

    def get(self, block: int) -> bytes | None:
        try:
            return self.container.download_blob(self._name(block)).readall()
        except ResourceNotFoundError:
            return None

    def kept(self) -> int:
        names = {blob.name[len(self.prefix) :] for blob in self.container.list_blobs(name_starts_with=self.prefix)}
        count = 0
        while self._name(count)[len(self.prefix) :] in names:
            count += 1
        return count

    def _name(self, block: int) -> str:
        return f"{self.prefix}{block:06d}"


@dataclass
class Checkpoints:
    """One window's progress as the runner sees it: what to continue from, and where to record each block."""

    repo: ProgressRepo
    account: str
    integration_id: str
    window_start: int
    part: int | None = None  # one part of a split window
    # The record as this invocation last read or wrote it (None: there is none), so a record costs one call.
    etag: str | None | Unread = UNREAD
    notes: BlockNotes | None = None  # per block, beside the record (a Parquet file's row-group metadata)
    # The record and its ETag as read ahead (by the job, beside the window's run record): `saved` answers it.
    ahead: Callable[[], tuple[WindowProgress, str] | None] | None = None
    _saved: tuple[WindowProgress | None] | None = field(default=None, init=False, repr=False)

    def saved(self) -> WindowProgress | None:
        """The recorded progress, read unless it is known there is none (the window's first attempt), or as
        read ahead; read once: asked again, the same answer (nothing but this export records it meanwhile)."""
        if self.etag is None:
            return None
        if self._saved is None:
            found = (
                self.ahead()
                if self.ahead is not None
                else self.repo.read(self.account, self.integration_id, self.window_start, self.part)
            )
            self.etag = found[1] if found else None
            self._saved = (found[0] if found else None,)
        return self._saved[0]

    def record(self, progress: WindowProgress) -> None:
        """Record the progress (called one at a time: the runner's recorder serialises its records)."""
        self.etag = self.repo.advance(
            self.account, self.integration_id, self.window_start, progress, self.part, self.etag
        )

    def clear(self) -> None:
        if self.etag is not None:  # None: nothing was recorded (a file of one block, say)
            self.repo.clear(self.account, self.integration_id, self.window_start, self.part)
        self.etag, self._saved = None, None


def no_progress(path: str) -> WindowProgress:
    """A window exported from its start."""
    return WindowProgress(path)


def with_block(
    progress: WindowProgress,
    position: ReadPosition | None,
    rows: int,
    size: int,
    upload: UploadState,
    digest: bytes = b"",
) -> WindowProgress:
    """The progress after one more block."""
    return replace(
        progress, blocks=progress.blocks + 1, position=position, rows=rows, bytes=size, upload=upload, digest=digest
    )


IF_SAME = MatchConditions.IfNotModified


def _further(progress: WindowProgress, than: WindowProgress) -> bool:
    return (progress.blocks, progress.complete) > (than.blocks, than.complete)


def _etag(answer: object) -> str | None:
    etag = answer.get("etag") if isinstance(answer, dict) else None
    return str(etag) if etag else None


def _partition(account: str, integration_id: str) -> str:
    return f"{account}~{integration_id}~progress"  # the run history's partition is f"{account}~{integration_id}"


def _row(window_start: int, part: int | None = None) -> str:
    return f"{window_start:012d}" if part is None else f"{window_start:012d}-part-{part:03d}"


ProgressSink = Callable[[WindowProgress], None]
