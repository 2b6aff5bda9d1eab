"""Export one window into a destination, as staged blocks and one commit (docs/invariants.md: atomic, deterministic files).

A window need not fit in one invocation (docs/architecture.md, windows of any size): blocks are cut only
where the format lets one end after whole rows (exporter/export/blocks.py, formats/base.py `FileCuts`),
so each block ends at a UCD read position; with `checkpoints`, every block staged is recorded (the
blocks so far, that position, the upload's state), and an export whose time runs out stops after a
block, to be continued by another invocation from the last recorded block without producing or
uploading the bytes before it again (exporter/export/resume.py: which files, and when one starts again).

The parts: the upload pipeline (pipeline.py), the blocks (blocks.py), the encode loop (encode.py), the
formats' writers and cuts (formats/), a manifest's hash and the manifest after the commit (manifest.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pyarrow as pa

from ..ucd import UcdStore
from ..ucd.reader import ReadPosition
from ..ucd.segments import SegmentRef
from ..windows import Window
from . import arenas  # the process's malloc arenas limited (at import), before any export thread
from .blocks import AlignedBlocks
from .csv_writer import BLOCK_BYTES
from .destination import Destination, UploadState
from .encode import encode
from .formats import file_format
from .formats.base import FileCuts, FileStart
from .formats.types import column_types
from .manifest import FileFacts, StreamDigest, file_digest, hashed, write_manifest
from .naming import window_path
from .pipeline import MAX_IN_FLIGHT, BlockUploader, ProgressRecorder
from .plan import Selection, column_plan
from .progress import Checkpoints, WindowProgress
from .reading import EarlyRead, begun_at
from .resume import after_failure, continued

__all__ = ["MAX_IN_FLIGHT", "Target", "WindowExport", "export_window"]


@dataclass(frozen=True)
class WindowExport:
    path: str
    rows: int  # rows of the file (or part) so far: all of them when complete
    bytes: int
    duration_s: float
    complete: bool = True  # False: the time ran out; the progress is recorded and another invocation continues
    staged_bytes: int = 0  # bytes this invocation staged (a resumed export stages only what was not recorded)
    blocks: int = 0  # blocks of the file (or part) staged so far
    sha256: str | None = (
        None  # a whole file's SHA-256, from the stream (None: a part, or a hash that could not continue)
    )
    restarted: str = ""  # the recorded blocks could not be continued: why the file started again from its first block


@dataclass(frozen=True)
class Target:
    """What one export writes: a whole window's file, or one part of a window split across workers."""

    path: str  # where the blocks go (a part may go to a temporary object of its own)
    first_index: int = 0  # the index of its first block (parts of one file take disjoint ranges)
    header: bool = True  # only the file's first part has the header
    until: str | None = None  # the segment the part ends before (None: the window's end)
    start: ReadPosition | None = None  # the part's first segment (None: the window's start)
    commit: bool = True  # commit the blocks as the file; a part's blocks wait for the file's one commit
    min_last_block: int = 0  # the part's last block is merged into the one before if smaller (S3's 5 MiB)
    joins: UploadState | None = None  # the split file's upload every part stages into (an S3 UploadId)


def export_window(
    ucd: UcdStore,
    account: str,
    integration_id: str,
    selection: Selection,
    window: Window,
    destination: Destination,
    *,
    block_bytes: int | None = None,
    max_in_flight: int = MAX_IN_FLIGHT,
    checkpoints: Checkpoints | None = None,
    out_of_time: Callable[[], bool] = lambda: False,
    target: Target | None = None,
    segments: Callable[[], list[SegmentRef]] | None = None,
    before_writes: Callable[[], None] = lambda: None,
    time_up: Callable[[WindowExport], None] | None = None,
) -> WindowExport:
    """Stream the window's rows into one file of the selection's format under its deterministic name;
    nothing is visible until commit. With a manifest, the manifest follows the commit.

    `selection` is the one the window's run record fixed, a typed file's parameter types included
    (`formats.fix_types`, asked by whoever writes that record: the worker, a replay): the bytes depend on them.

    With `checkpoints`, the file continues from the recorded progress and records each block; once
    `out_of_time()` it stops after a block (at least one per call) and answers `complete=False`. With a
    `target`, it exports one part of a split window instead. Whether a file may take either is the
    caller's to ask, once (exporter/export/resume.py: `continuable`, `splittable`). `segments` gives the window's
    segments when the caller has listed them already (the worker, deciding whether to split), so they
    are not listed twice. Recorded blocks that cannot be continued (their upload, a Parquet file's
    notes or the SHA-256 state gone or unusable) make the file start again from its first block, and
    the answer's `restarted` says why.

    `before_writes()` returns once the export may write (the caller's run record has landed: it is
    written while the export reads where the file stands), and raises if it may not; it is asked before
    the export's first write of any kind. `time_up(so_far)`: told once the time ran out, before the last
    blocks have landed, with the answer as it will be (its rows and bytes): the caller's records of a
    continuing window are written while they land.
    """
    started = time.monotonic()
    plan = column_plan(selection.events, selection.attributes)
    fmt = file_format(selection.format)
    types = column_types(plan, dict(selection.param_types or ()))
    target = target or Target(window_path(destination.prefix, account, integration_id, window, fmt.extension))
    facts_of = functools.partial(FileFacts, account, integration_id, window, target.path, fmt.name)
    shared = target.joins is not None or not target.commit
    listing = _Listing(segments() if segments else None, lambda: ucd.segments(account, window.start, window.end))

    def open_file(progress: WindowProgress) -> tuple[FileCuts, StreamDigest | None]:
        start = FileStart(
            plan,
            types,
            progress,
            header=target.header and progress.blocks == 0,
            whole_window=target.start is None and target.until is None,
            listing=listing,
            recorded=checkpoints is not None,
            notes=checkpoints.notes if checkpoints else None,
        )
        return fmt.begin(start), file_digest(selection, progress, whole=not shared and not target.first_index)

    def read(at: ReadPosition | None) -> Iterator[tuple[ReadPosition, pa.RecordBatch]]:
        return ucd.read_from(
            account,
            window.start,
            window.end,
            at,
            until=target.until,
            segments=listing.listed,
            event_names=plan.event_names,
            columns=plan.source_columns,
        )

    # Begun where the file continues, as recorded, while the upload and the format are opened there (a
    # read that lists its own segments begins later: a format may list them too, and they are listed once).
    early = EarlyRead(read, _continues_at(checkpoints, target)) if listing.listed is not None else None
    try:
        begun = continued(
            destination, target.path, checkpoints, open_file, target.first_index, target.joins, shared, before_writes
        )
    except BaseException:
        if early is not None:
            early.close()
        raise
    progress, (cuts, digest) = begun.progress, begun.opened
    record = checkpoints.record if checkpoints else None
    recorder = ProgressRecorder(progress, cuts.recording(record) if record else None)
    uploader = BlockUploader(destination, target.path, recorder, max_in_flight, first_index=target.first_index)
    emit = hashed(digest, uploader.stage) if digest else uploader.stage
    sink = AlignedBlocks(
        cuts.handing_on(emit),
        block_bytes or BLOCK_BYTES,
        already=progress.bytes,
        min_last_block=target.min_last_block,
    )
    uploader.staged = sink.spares.give
    batches = begun_at(early, read, progress.position or target.start)

    def stopping(rows: int) -> None:
        if time_up is not None:
            took = time.monotonic() - started
            so_far = WindowExport(target.path, rows, sink.bytes_written, took, False, restarted=begun.restarted)
            time_up(so_far)

    try:
        before_writes()  # the first block, a Parquet block's note: nothing is written before the caller's record
    except BaseException:
        _close(batches)
        raise
    try:
        rows, complete = encode(batches, plan, cuts, sink, progress, out_of_time, stopping)
        if complete and target.commit:
            uploader.commit()
        else:
            uploader.drain()
    except BaseException:
        after_failure(uploader, checkpoints, recorder, shared)
        raise
    finally:
        sink.discard()
        _close(batches)  # the read-ahead's segments are dropped now, before their memory is given back
        arenas.release_freed()
    if complete and checkpoints is not None:
        if checkpoints.part is None:
            checkpoints.clear()
        else:
            checkpoints.record(replace(recorder.progress, complete=True))  # a part: kept until the file's commit
    sha256 = digest.hexdigest() if digest is not None and complete and target.commit else None
    if sha256 is not None and selection.manifest:  # the manifest follows the file's commit
        write_manifest(destination, facts_of(rows, sink.bytes_written, sha256, types))
    took = time.monotonic() - started
    blocks = recorder.progress.blocks
    return WindowExport(
        target.path, rows, sink.bytes_written, took, complete, uploader.staged_bytes, blocks, sha256, begun.restarted
    )


def _continues_at(checkpoints: Checkpoints | None, target: Target) -> ReadPosition | None:
    """Where the file's read continues as its progress is recorded (`continued` decides whether it does)."""
    saved = checkpoints.saved() if checkpoints is not None else None  # read once: `continued` asks it again
    recorded = saved is not None and saved.path == target.path and saved.blocks > 0
    return (saved.position if saved is not None and recorded else None) or target.start


def _close(batches: Iterator[object]) -> None:
    close = getattr(batches, "close", None)
    if close is not None:
        close()


class _Listing:
    """The window's segments, listed at most once: given by the caller (who listed them already), or listed
    when a format asks (a gzip format's members are grouped by the whole listing)."""

    def __init__(self, listed: list[SegmentRef] | None, list_segments: Callable[[], list[SegmentRef]]):
        self.listed = listed
        self._list = list_segments

    def __call__(self) -> list[SegmentRef]:
        if self.listed is None:
            self.listed = self._list()
        return self.listed
