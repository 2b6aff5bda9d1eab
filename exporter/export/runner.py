"""Export one window into a destination, as staged blocks and one commit (docs/invariants.md: atomic, deterministic files).

A window need not fit in one invocation (docs/architecture.md, windows of any size): blocks are cut only
after whole batches, so each block ends at a UCD read position; with `checkpoints`, every block staged
is recorded (the blocks so far, that position, the upload's state), and an export whose time runs out
stops after a block, to be continued by another invocation from the last recorded block without
producing or uploading the bytes before it again. Any file can be continued (`continuable`), with a
manifest too where the SHA-256's state can be saved (each block's progress carries it); a gzip
format's blocks end only where a gzip member ends (`GzipMarks`), a Parquet file's only where a row
group ends, its footer's pieces kept per block beside the progress (`ParquetFooter`). Only a row
format's file without a manifest is split across workers (`splittable`): the parts' hashes could not
be joined, and a Parquet footer covers every row group.

The encoder is the selection's format (exporter/export/formats); a manifest (exporter/export/manifest.py) follows the commit.
"""

from __future__ import annotations

import builtins
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import pyarrow as pa

from ..errors import InternalError, TransientError
from ..ucd import UcdStore
from ..ucd.reader import ReadPosition
from ..ucd.segments import SegmentRef
from ..windows import Window
from . import sha256
from .csv_writer import BLOCK_BYTES
from .destination import Destination, UploadLost, UploadState
from .formats import FileFormat, compress, file_format, fix_types, parquet
from .formats.base import RowWriter
from .formats.compress import GzipMembers, member_groups
from .formats.parquet import ParquetRows
from .formats.types import ColumnTypes, column_types
from .manifest import FileFacts, StreamDigest, write_manifest
from .naming import window_path
from .plan import ColumnPlan, Selection, column_plan
from .progress import BlockNotes, Checkpoints, WindowProgress, no_progress, with_block

MAX_IN_FLIGHT = 4  # blocks staged (or queued) at once
NOTE_THREADS = 8  # a continued Parquet file's block notes are read (and each block's written) this many at once
SPARE_BLOCKS = 2  # staged blocks kept for reuse: the encoder cuts one as a stage thread frees another
SLICE_ROWS = 8_192  # a block may end after every SLICE_ROWS rows of a segment: it exceeds block_bytes by at most this

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Mark:
    """Where a block ends: the read position after its last row, and the file's rows and bytes up to it."""

    position: ReadPosition | None
    rows: int
    bytes: int
    last: bool = False  # the file's (or part's) last block: its commit, or the part's complete record, follows
    digest: builtins.bytes = b""  # a file with a manifest: the SHA-256 state after this block


class ProgressRecorder:
    """Records the progress of the blocks staged in order so far, as each one lands (any order)."""

    def __init__(self, start: WindowProgress, record: Callable[[WindowProgress], None] | None):
        self.progress = start
        self._record = record
        self._landed: dict[int, tuple[Mark, UploadState]] = {}
        self._lock = threading.Lock()

    def landed(self, index: int, mark: Mark, state: UploadState) -> None:
        with self._lock:  # one record at a time, so the records only ever move forward
            self._landed[index] = (mark, state)
            recordable = None
            while self.progress.blocks in self._landed:
                m, s = self._landed.pop(self.progress.blocks)
                self.progress = with_block(self.progress, m.position, m.rows, m.bytes, s, m.digest)
                # The last block is not recorded: the commit (or a part's complete record) follows at once,
                # and a worker dying before it stages this one block again.
                if not m.last:
                    recordable = self.progress
            if self._record is not None and recordable is not None:
                self._record(recordable)


class BlockUploader:
    """Stages blocks in the background while the next batch is read and encoded.

    At most `max_in_flight` blocks are held (queued or uploading): the producer waits beyond that,
    so memory stays bounded by blocks, not by the file.
    """

    def __init__(
        self,
        destination: Destination,
        path: str,
        recorder: ProgressRecorder,
        max_in_flight: int = MAX_IN_FLIGHT,
        first_index: int = 0,
    ):
        self.destination = destination
        self.path = path
        self.recorder = recorder
        self.first_index = first_index
        self.count = first_index + recorder.progress.blocks  # the next block's index
        self.staged_bytes = 0
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="stage")
        self._futures: list[Future] = []
        self.staged: Callable[[bytes], None] = lambda _block: None  # told of each block once the destination has it

    def stage(self, data: bytes, mark: Mark) -> None:
        self._raise_if_failed()
        index, self.count = self.count, self.count + 1
        self.staged_bytes += len(data)
        self._slots.acquire()
        future = self._pool.submit(self._stage, index, data, mark)
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures.append(future)

    def _stage(self, index: int, data: bytes, mark: Mark) -> None:
        state = self.destination.stage_block(self.path, index, data)
        self.recorder.landed(index - self.first_index, mark, state or UploadState())
        self.staged(data)  # a destination keeps no reference to a block once it has staged it

    def _raise_if_failed(self) -> None:
        for future in self._futures:
            failure = future.exception() if future.done() else None
            if failure is not None:
                raise failure
        self._futures = [f for f in self._futures if not f.done()]

    def drain(self) -> None:
        """Wait for every block handed over; raise the first failure."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True)

    def commit(self) -> None:
        self.drain()
        if self.first_index:
            raise InternalError("a part of a split file is committed with the others, not alone")
        self.destination.commit_blocks(self.path, self.count)

    def stop(self) -> None:
        """Stop after a failure: blocks not yet started are dropped, those uploading finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        self.stop()
        try:
            self.destination.abandon_blocks(self.path)
        except Exception:  # noqa: BLE001 - best effort: the failure that got us here is the one to raise
            log.warning("could not abandon the staged blocks of %s", self.path)


class SpareBlocks:
    """Blocks the destination has staged, handed back so their memory (already touched) holds later blocks:
    a fresh block costs zeroing and faulting in all its pages (about 4 ms for 10 MiB here).

    Shared by the sink that takes and the uploader that gives, so that neither holds the other.
    """

    def __init__(self, block_bytes: int, keep: int = SPARE_BLOCKS):
        self._least = block_bytes
        self._keep = keep
        self._blocks: list[bytearray] = []  # list.append and pop are atomic: stage threads give, the encoder takes

    def give(self, block: bytes) -> None:
        if isinstance(block, bytearray) and len(block) >= self._least and len(self._blocks) < self._keep:
            self._blocks.append(block)

    def take(self) -> bytearray | None:
        try:
            return self._blocks.pop()
        except IndexError:
            return None

    def clear(self) -> None:
        self._blocks.clear()


class AlignedBlocks:
    """A write-only file that hands on a block only where the caller marks a read position, once it holds
    at least `block_bytes`: every block then ends after a whole row, at a place a later invocation can
    continue from. The cuts are a function of the stored data alone, so a continued export cuts the same
    blocks as an export in one go.

    A cut block is handed on once a byte follows it, or by `finish` (marked the last: its progress is not
    recorded, the commit follows) or `release` (the export stops after it). With `min_last_block`, it is
    held until the next one is cut instead, so that a short last block can be merged into it (a part of
    an S3 file other than the last must end in a part of at least 5 MiB).
    """

    def __init__(
        self, emit: Callable[[bytes, Mark], None], block_bytes: int, already: int = 0, min_last_block: int = 0
    ):
        self._emit = emit
        self._block_bytes = block_bytes
        self._min_last = min_last_block
        self._held: tuple[bytearray, Mark] | None = None  # cut, not yet handed on
        self.spares = SpareBlocks(block_bytes)  # blocks staged and handed back (the uploader gives them)
        # Room for a block and the slice that ends it.
        self._capacity = block_bytes + block_bytes // 4
        self._block = bytearray(self._capacity)
        self._filled = 0
        self.bytes_written = already
        self.closed = False

    def write(self, data) -> int:
        if self._held is not None and not self._min_last:
            self.release()  # a byte follows the block cut last: it is not the file's last
        view = memoryview(data).cast("B")
        end = self._filled + len(view)
        self._block[self._filled : end] = view  # Arrow reuses the buffer it writes from: copied once, here
        self._filled = end
        self.bytes_written += len(view)
        return len(view)

    def flush(self) -> None:
        pass

    def mark(self, position: ReadPosition | None, rows: int) -> bool:
        """A block may end here; True if one was cut (so an export may stop after it: `release`)."""
        if self._filled < self._block_bytes:
            return False
        held, self._held = self._held, (self._take(), Mark(position, rows, self.bytes_written))
        if not self._min_last:
            return True
        if held is not None:
            self._emit(*held)  # a stop now drops the block just cut: the next invocation encodes it again
        return held is not None

    def release(self) -> None:
        """The export stops after the block cut last (or continues past it): hand it on."""
        if self._held is not None and not self._min_last:
            held, self._held = self._held, None
            self._emit(*held)

    def finish(self, position: ReadPosition | None, rows: int) -> None:
        blocks = [self._held] if self._held is not None else []
        self._held = None
        if self._filled:
            last = (self._take(last=True), Mark(position, rows, self.bytes_written))
            if blocks and len(last[0]) < self._min_last:
                last = (blocks.pop()[0] + last[0], last[1])
            blocks.append(last)
        for i, (block, mark) in enumerate(blocks):
            self._emit(block, replace(mark, last=i == len(blocks) - 1))

    def discard(self) -> None:
        """The export is over: drop the blocks held, at once (a reference cycle must not keep them alive)."""
        self._block, self._held, self._filled = bytearray(), None, 0
        self.spares.clear()

    def _take(self, last: bool = False) -> bytearray:
        # bytearray(n) zeroes all n bytes (CPU, and RSS): the last block is followed by none. A spare block
        # keeps its allocation (a bytearray cut to at least half of it is not reallocated) and grows back
        # into it as it is written.
        fresh = bytearray() if last else self.spares.take() or bytearray(self._capacity)
        block, self._block, filled, self._filled = self._block, fresh, self._filled, 0
        del block[filled:]  # a block handed on is never written again
        return block


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
) -> WindowExport:
    """Stream the window's rows into one file of the selection's format under its deterministic name;
    nothing is visible until commit. With a manifest, the manifest follows the commit.

    A `continuable` file continues from the recorded progress with `checkpoints` and records each
    block; once `out_of_time()` it stops after a block (at least one per call) and answers
    `complete=False`. A `splittable` file's `target` exports one part of a split window instead
    (exporter/jobs/split.py). Where a manifest's SHA-256 state cannot be saved, a file with a manifest is
    not `continuable`: it is exported in one go and takes neither. `segments` gives the window's
    segments when the caller has listed them already (the worker, deciding whether to split), so they
    are not listed twice.
    """
    started = time.monotonic()
    selection = fix_types(selection, lambda: ucd.catalog(account))  # the worker fixed them already; a test may not
    plan = column_plan(selection.events, selection.attributes)
    fmt = file_format(selection.format)
    types = column_types(plan, dict(selection.param_types or ()))
    if (checkpoints is not None and not continuable(selection)) or (target is not None and not splittable(selection)):
        raise InternalError(f"a {selection.format} file (manifest: {selection.manifest}) is not continued or split")
    target = target or Target(window_path(destination.prefix, account, integration_id, window, fmt.extension))
    facts_of = functools.partial(FileFacts, account, integration_id, window, target.path, fmt.name)
    progress = _continued(destination, target, checkpoints)
    footer = None
    if fmt.row_groups:
        progress, footer = _footer_of(destination, progress, target, checkpoints)
    record = checkpoints.record if checkpoints else None
    recorder = ProgressRecorder(progress, footer.recording(record) if footer and record else record)
    uploader = BlockUploader(destination, target.path, recorder, max_in_flight, first_index=target.first_index)
    digest = _digest(selection, progress, target)
    emit = _hashed(digest, uploader.stage) if digest else uploader.stage
    sink = AlignedBlocks(
        footer.noting(emit) if footer else emit,
        block_bytes or BLOCK_BYTES,
        already=progress.bytes,
        min_last_block=target.min_last_block,
    )
    uploader.staged = sink.spares.give
    listed = segments() if segments else None
    if fmt.gzip and listed is None:
        listed = ucd.segments(account, window.start, window.end)  # gzip members are grouped by the whole listing
    batches = ucd.read_from(
        account,
        window.start,
        window.end,
        progress.position or target.start,
        until=target.until,
        segments=listed,
        event_names=plan.event_names,
        columns=plan.source_columns,
    )
    try:
        encoding = Encoding(plan, fmt, types, sink, progress, target, listed or [], footer)
        rows, complete = _encode(batches, encoding, out_of_time)
        if complete and target.commit:
            uploader.commit()
        else:
            uploader.drain()
    except BaseException:
        _after_failure(uploader, checkpoints, recorder, shared=target.joins is not None or not target.commit)
        raise
    finally:
        sink.discard()
    if complete and checkpoints is not None:
        if checkpoints.part is None:
            checkpoints.clear()
        else:
            checkpoints.record(replace(recorder.progress, complete=True))  # a part: kept until the file's commit
    sha256 = digest.hexdigest() if digest is not None and complete and target.commit else None
    if sha256 is not None and selection.manifest:  # the manifest follows the file's commit
        _manifest(destination, facts_of(rows, sink.bytes_written, sha256, types))
    took = time.monotonic() - started
    blocks = recorder.progress.blocks
    return WindowExport(target.path, rows, sink.bytes_written, took, complete, uploader.staged_bytes, blocks, sha256)


def continuable(selection: Selection) -> bool:
    """Whether a window's file can stop after a block and be continued by a follow-up invocation.

    Any format: a row format's blocks end after whole rows (a gzip format's also after a whole gzip
    member, `GzipMarks`), a Parquet file's after a whole row group, so nothing in the bytes to come
    depends on the bytes before: a block list, a read position and (Parquet) the row groups' metadata
    for the footer, kept per block (`ParquetFooter`), are all a continuation needs; with a manifest,
    the SHA-256's state after each block too, where it can be saved (`sha256.available()`).
    """
    return not selection.manifest or sha256.available()


def splittable(selection: Selection) -> bool:
    """Whether a window's file can be written in parts by several workers: a continuable row format without
    a manifest (one SHA-256 runs over the whole stream, in order, and the parts' hashes cannot be joined;
    a Parquet footer needs every row group's metadata, and its row groups are counted from the file's
    first row, which a part beginning at a segment cannot know)."""
    return continuable(selection) and not selection.manifest and not file_format(selection.format).row_groups


def keeps_notes(selection: Selection) -> bool:
    """Whether a window's export keeps block notes beside its progress (a continuable Parquet file's footer)."""
    return continuable(selection) and file_format(selection.format).row_groups


def _digest(selection: Selection, progress: WindowProgress, target: Target) -> StreamDigest | None:
    """The file's SHA-256 (its run record keeps it; a manifest states it), continued from the recorded blocks' state.

    None for a part of a split file (one hash runs over the whole stream, in order), and for a file without
    a manifest continued from blocks that carry no state (recorded where the state cannot be saved): its
    run record then has no SHA-256, and nothing else changes.
    """
    if target.first_index or not target.commit or target.joins is not None:
        return None
    if progress.blocks and not progress.digest:
        if selection.manifest:
            raise InternalError("a file with a manifest was continued without its SHA-256 state")
        return None
    return StreamDigest(progress.digest if progress.blocks else b"")


def _hashed(digest: StreamDigest, stage: Callable[[bytes, Mark], None]) -> Callable[[bytes, Mark], None]:
    """`stage`, with every block hashed on its way (blocks are handed on in order), and the hash's state
    after it carried in its mark, so that its progress record continues the hash."""

    def through(block: bytes, mark: Mark) -> None:
        digest.add(block)
        stage(block, replace(mark, digest=digest.state()))

    return through


def _manifest(destination: Destination, facts: FileFacts) -> str:
    """Write the committed file's manifest; answer the file's SHA-256."""
    write_manifest(destination, facts)
    return facts.sha256


def _continued(destination: Destination, target: Target, checkpoints: Checkpoints | None) -> WindowProgress:
    """The recorded progress of this file (or part), if its upload can be continued; else a fresh start."""
    path = target.path
    saved = checkpoints.saved() if checkpoints else None
    fresh = no_progress(path)
    if checkpoints is None or saved is None or saved.path != path or saved.blocks == 0:
        saved = fresh
    staged = range(target.first_index, target.first_index + saved.blocks)
    state = saved.upload if saved.blocks else target.joins
    if state is None:
        return saved
    try:
        destination.resume_upload(path, state, staged)
    except UploadLost:
        if target.joins is not None:
            raise  # the split file's own upload is gone: the split starts again (exporter/jobs/split.py)
        log.warning("the staged blocks of %s are gone; the file is exported again from its start", path)
        if checkpoints is not None:
            checkpoints.clear()
        return fresh
    return saved


def _after_failure(
    uploader: BlockUploader, checkpoints: Checkpoints | None, recorder: ProgressRecorder, shared: bool
) -> None:
    """Keep what is recorded for the next invocation; give up an upload nothing can continue.

    A part of a split file never gives up the upload: the other parts stage into it too.
    """
    if shared or (checkpoints is not None and recorder.progress.blocks > 0):
        uploader.stop()
        return
    uploader.abandon()


class GzipMarks:
    """Where a gzip row format's blocks may end: only where a gzip member ends (exporter/export/formats/compress.py).

    A member ends between two segments of different member groups (`member_groups`: once it covers
    `MEMBER_SEGMENT_BYTES` of the window's stored segments) and, inside a segment, at a multiple of
    SLICE_ROWS of its rows once `MEMBER_BYTES` of the member are compressed. Both depend on the
    window's listing and the segments' rows alone, not on where this read began, where a block ended
    or how the read batched a segment: an export continued from any block (a member end), and a part of
    a split window (which begins where a group does, `plan_parts`), write exactly the members of an
    export in one go. A block ends at a member end once it holds block_bytes.
    """

    def __init__(self, sink: AlignedBlocks, whole_window: bool, segments: list[SegmentRef]):
        self.sink = sink
        self.members = GzipMembers(sink)
        self._whole_window = whole_window
        self._group = dict(zip([ref.path for ref in segments], member_groups(ref.size for ref in segments)))

    def segment_begins(self, segment: str, position: ReadPosition | None, rows: int) -> bool:
        """Before a batch of `segment`: a member ends if a group began since the last; True if a block was handed on."""
        if position is None or self._group[position.segment] == self._group[segment]:
            return False
        self.members.end_member()
        return self.sink.mark(position, rows)

    def mark(self, position: ReadPosition, rows: int) -> bool:
        """After a slice: True if a member, then a block, ended here."""
        if position.rows % SLICE_ROWS or self.members.member_bytes < compress.MEMBER_BYTES:
            return False
        self.members.end_member()
        return self.sink.mark(position, rows)

    def finish(self, position: ReadPosition | None, rows: int) -> None:
        self.members.end_member()
        if self._whole_window and self.sink.bytes_written == 0:
            self.members.empty_member()  # a window without a byte (JSON Lines has no header) is still a gzip file
        self.sink.finish(position, rows)


# Threads start on demand and serve every export of the process: note reads and writes are small and brief.
_NOTES = ThreadPoolExecutor(NOTE_THREADS, thread_name_prefix="notes")


class ParquetFooter:
    """A Parquet file's footer, in pieces: a block's piece is the RowGroups (`ParquetRows`) that end in it.

    With checkpoints, each piece is the block's note (`BlockNotes`), written (in the background, as the
    block is handed on) before the block's progress is recorded, so a continuation reads back the pieces
    of every block before it (in the background too: the footer needs them only at the file's end); a
    Parquet file's blocks end only where a row group ends (`_group_ends`). The last block's progress is
    never recorded (the commit follows), so a continuation always has the footer still to write.
    """

    def __init__(self, first_block: int, earlier: list[Future[bytes | None]], notes: BlockNotes | None):
        self._earlier = earlier  # the notes of the recorded blocks, being read
        self._pieces: dict[int, bytes] = {}  # this invocation's blocks' pieces, by block
        self._written: dict[int, Future[None]] = {}  # their notes, being written
        self._notes = notes
        self._next = first_block  # the next block handed on
        self._stored = first_block  # the notes of the blocks before this one are stored
        self._lock = threading.Lock()
        self.writer: ParquetRows | None = None

    @classmethod
    def continuing(cls, progress: WindowProgress, notes: BlockNotes | None) -> ParquetFooter | None:
        """The footer so far of the blocks `progress` records; None if a block's note is gone (expired)."""
        if not progress.blocks:
            return cls(0, [], notes)
        if notes is None:
            raise InternalError("a Parquet file continued without its block notes")
        if notes.kept() < progress.blocks:
            return None
        return cls(progress.blocks, [_NOTES.submit(notes.get, b) for b in range(progress.blocks)], notes)

    def writer_for(
        self, plan: ColumnPlan, types: ColumnTypes, sink: AlignedBlocks, progress: WindowProgress
    ) -> ParquetRows:
        """The file's row-group writer, continuing after the recorded blocks (which end where row groups do)."""
        groups = progress.rows // parquet.ROW_GROUP_ROWS
        self.writer = ParquetRows(plan, types, sink, progress.blocks == 0, sink.bytes_written, groups)
        return self.writer

    def noting(self, emit: Callable[[bytes, Mark], None]) -> Callable[[bytes, Mark], None]:
        """`emit`, keeping each block's piece first: the row groups that end within its bytes (blocks come in order)."""

        def through(block: bytes, mark: Mark) -> None:
            if self.writer is None:
                raise InternalError("a Parquet block before its writer")
            piece = b"".join(self.writer.take_ended(mark.bytes))
            with self._lock:
                index, self._next = self._next, self._next + 1
                self._pieces[index] = piece
                if self._notes is not None and not mark.last:  # the last block is never recorded: no note needed
                    self._written[index] = _NOTES.submit(self._notes.put, index, piece)
            emit(block, mark)

        return through

    def recording(self, record: Callable[[WindowProgress], None]) -> Callable[[WindowProgress], None]:
        """`record`, once the notes of the blocks it records are stored (records come one at a time, in order)."""

        def through(progress: WindowProgress) -> None:
            while self._stored < progress.blocks:
                with self._lock:
                    written = self._written.pop(self._stored, None)
                if written is not None:
                    written.result()  # written while the block uploaded: rarely still running
                self._stored += 1
            record(progress)

        return through

    def finish(self, sink: AlignedBlocks, position: ReadPosition | None, rows: int) -> None:
        """The last row group and the footer, then the last block."""
        if self.writer is None:
            raise InternalError("a Parquet file finished before its writer")
        self.writer.finish(rows, self._handed_on)
        sink.finish(position, rows)

    def _handed_on(self) -> list[bytes]:
        """The pieces of the blocks handed on so far, in order: the recorded blocks' notes, then this invocation's."""
        earlier = [future.result() for future in self._earlier]
        if any(note is None for note in earlier):
            raise TransientError("a block note of a Parquet file vanished while it was continued")
        with self._lock:
            return [note for note in earlier if note is not None] + [self._pieces[b] for b in sorted(self._pieces)]


def _footer_of(
    destination: Destination, progress: WindowProgress, target: Target, checkpoints: Checkpoints | None
) -> tuple[WindowProgress, ParquetFooter]:
    """A Parquet file's progress and footer so far; if a recorded block's note is gone (past the staging
    container's lifecycle rule), a fresh start in a new upload (a GCS session takes no block 0 again)."""
    notes = checkpoints.notes if checkpoints else None
    if checkpoints is not None and notes is None:
        raise InternalError("a Parquet file's progress is recorded with its block notes")
    footer = ParquetFooter.continuing(progress, notes)
    if footer is not None:
        return progress, footer
    log.warning("the footer notes of %s are gone; the file is exported again from its start", target.path)
    try:
        destination.abandon_blocks(target.path)  # the upload just taken over: its next block would be block 0
    except Exception:  # noqa: BLE001 - best effort: the new upload does not depend on it
        log.warning("could not abandon the staged blocks of %s", target.path)
    if checkpoints is not None:
        checkpoints.clear()
    return no_progress(target.path), ParquetFooter(0, [], notes)


@dataclass(frozen=True)
class Encoding:
    """What one export encodes with: the columns, the format, where the bytes go and where it continues from."""

    plan: ColumnPlan
    fmt: FileFormat
    types: ColumnTypes
    sink: AlignedBlocks
    progress: WindowProgress
    target: Target
    segments: list[SegmentRef]  # the window's whole listing, which groups a gzip format's members
    footer: ParquetFooter | None = None  # Parquet


def _encode(
    batches: Iterator[tuple[ReadPosition, pa.RecordBatch]], e: Encoding, out_of_time: Callable[[], bool]
) -> tuple[int, bool]:
    """Encode batches into the sink until the end of the window (True) or a block after the time ran out."""
    rows = e.progress.rows
    position = e.progress.position
    sink, footer = e.sink, e.footer
    whole_window = e.target.start is None and e.target.until is None
    gzip = GzipMarks(sink, whole_window, e.segments) if e.fmt.gzip else None
    header = e.target.header and e.progress.blocks == 0
    if footer is not None:
        writer: RowWriter = footer.writer_for(e.plan, e.types, sink, e.progress)
    else:
        writer = e.fmt.rows(e.plan, e.types, gzip.members if gzip else sink, header)
    mark = gzip.mark if gzip else _group_ends(sink) if footer else sink.mark
    try:
        for after, batch in batches:
            if gzip is not None and gzip.segment_begins(after.segment, position, rows) and out_of_time():
                sink.release()
                return rows, False
            pieces = _slices(after, e.plan.project(batch))  # projected once, sliced without copies
            for piece, position in _at_group_ends(pieces, rows) if footer else pieces:
                writer.write(piece)
                rows += piece.num_rows
                if mark(position, rows) and out_of_time():
                    sink.release()
                    return rows, False
    finally:
        writer.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the read's prefetch at once when the time ran out
    if footer is not None:
        footer.finish(sink, position, rows)
    else:
        (gzip or sink).finish(position, rows)
    return rows, True


def _group_ends(sink: AlignedBlocks) -> Callable[[ReadPosition, int], bool]:
    """Parquet's marks: a block may end only where a row group ends (after every ROW_GROUP_ROWS rows of the file)."""
    return lambda position, rows: rows % parquet.ROW_GROUP_ROWS == 0 and sink.mark(position, rows)


def _at_group_ends(
    pieces: Iterator[tuple[pa.RecordBatch, ReadPosition]], rows: int
) -> Iterator[tuple[pa.RecordBatch, ReadPosition]]:
    """The pieces, each cut where a row group of the file ends (`rows`: the file's rows before them)."""
    group = parquet.ROW_GROUP_ROWS
    for piece, after in pieces:
        offset = 0
        while offset < piece.num_rows:
            take = min(piece.num_rows - offset, group - rows % group)
            offset += take
            rows += take
            yield piece.slice(offset - take, take), ReadPosition(after.segment, after.rows - (piece.num_rows - offset))


def _slices(after: ReadPosition, batch: pa.RecordBatch) -> Iterator[tuple[pa.RecordBatch, ReadPosition]]:
    """A batch in pieces, each with the read position after it: a piece ends at every multiple of
    SLICE_ROWS rows of the segment and at the batch's end, so a gzip member's possible ends
    (`GzipMarks`) fall on the same rows however the read batched the segment."""
    first = after.rows - batch.num_rows  # the segment's rows before this batch
    offset = 0
    while offset < batch.num_rows:
        take = min(batch.num_rows - offset, SLICE_ROWS - (first + offset) % SLICE_ROWS)
        yield batch.slice(offset, take), ReadPosition(after.segment, first + offset + take)
        offset += take
