"""Export one window into a destination, as staged blocks and one commit (docs/invariants.md: atomic, deterministic files).

A window need not fit in one invocation (docs/architecture.md, windows of any size): blocks are cut only
after whole batches, so each block ends at a UCD read position; with `checkpoints`, every block staged
is recorded (the blocks so far, that position, the upload's state), and an export whose time runs out
stops after a block, to be continued by another invocation from the last recorded block without
producing or uploading the bytes before it again. Only a CSV file without a manifest can be continued
(`continuable`); any other file is exported whole in one invocation.

The encoder is the selection's format (exporter/export/formats); a manifest (exporter/export/manifest.py) follows the commit.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InternalError
from ..ucd import UcdStore
from ..ucd.reader import ReadPosition
from ..ucd.segments import SegmentRef
from ..windows import Window
from .csv_writer import BLOCK_BYTES, WRITE_OPTIONS, BlockSink
from .destination import Destination, UploadLost, UploadState
from .formats import Format, file_format, fix_types
from .formats.types import column_types
from .manifest import FileFacts, StreamDigest, write_manifest
from .naming import window_path
from .plan import ColumnPlan, Selection, column_plan
from .progress import Checkpoints, WindowProgress, no_progress, with_block

MAX_IN_FLIGHT = 4  # blocks staged (or queued) at once
SLICE_ROWS = 8_192  # rows encoded between two possible block ends: a block exceeds block_bytes by at most this

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
    sha256: str | None = None  # with a manifest: the file's SHA-256, from the stream


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
            before = self.progress.blocks
            while self.progress.blocks in self._landed:
                m, s = self._landed.pop(self.progress.blocks)
                self.progress = with_block(self.progress, m.position, m.rows, m.bytes, s)
            if self._record is not None and self.progress.blocks > before:
                self._record(self.progress)


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


class AlignedBlocks:
    """A write-only file that hands on a block only where the caller marks a read position, once it holds
    at least `block_bytes`: every block then ends after a whole row, at a place a later invocation can
    continue from. The cuts are a function of the stored data alone, so a continued export cuts the same
    blocks as an export in one go.

    With `min_last_block`, each cut block is held until the next one is cut, so that a short last block
    can be merged into it (a part of an S3 file other than the last must end in a part of at least 5 MiB).
    """

    def __init__(
        self, emit: Callable[[bytes, Mark], None], block_bytes: int, already: int = 0, min_last_block: int = 0
    ):
        self._emit = emit
        self._block_bytes = block_bytes
        self._min_last = min_last_block
        self._held: tuple[bytearray, Mark] | None = None
        # Room for a block and the slice that ends it; zeroed on demand: pages are touched only as they fill.
        self._capacity = block_bytes + block_bytes // 4
        self._block = bytearray(self._capacity)
        self._filled = 0
        self.bytes_written = already
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        end = self._filled + len(view)
        self._block[self._filled : end] = view  # Arrow reuses the buffer it writes from: copied once, here
        self._filled = end
        self.bytes_written += len(view)
        return len(view)

    def flush(self) -> None:
        pass

    def mark(self, position: ReadPosition | None, rows: int) -> bool:
        """A block may end here; True if one was handed on (so an export may stop after it)."""
        if self._filled < self._block_bytes:
            return False
        cut = (self._take(), Mark(position, rows, self.bytes_written))
        if not self._min_last:
            self._emit(*cut)
            return True
        held, self._held = self._held, cut
        if held is not None:
            self._emit(*held)  # a stop now drops the held block: the next invocation encodes it again
        return held is not None

    def finish(self, position: ReadPosition | None, rows: int) -> None:
        last = (self._take(), Mark(position, rows, self.bytes_written)) if self._filled else None
        held, self._held = self._held, None
        if held is not None and last is not None and len(last[0]) < self._min_last:
            last = (held[0] + last[0], last[1])
            held = None
        for block in (held, last):
            if block is not None:
                self._emit(*block)

    def _take(self) -> bytearray:
        block, self._block, filled, self._filled = self._block, bytearray(self._capacity), self._filled, 0
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
    `complete=False`. A `target` exports one part of a split window instead (exporter/jobs/split.py).
    Any other file is exported whole: it takes neither. `segments` gives the window's segments when the
    caller has listed them already (the worker, deciding whether to split), so they are not listed twice.
    """
    started = time.monotonic()
    selection = fix_types(selection, lambda: ucd.catalog(account))  # the worker fixed them already; a test may not
    plan = column_plan(selection.events, selection.attributes)
    if not continuable(selection):
        if checkpoints is not None or target is not None:
            raise InternalError(f"a {selection.format} file (manifest: {selection.manifest}) is exported whole")
        path = window_path(destination.prefix, account, integration_id, window, file_format(selection.format).extension)
        batches = ucd.read_window(
            account,
            window.start,
            window.end,
            event_names=plan.event_names,
            columns=plan.source_columns,
            segments=segments() if segments else None,
        )
        facts_of = functools.partial(FileFacts, account, integration_id, window, path)
        rows, size, staged, blocks, sha256 = _export_whole(
            batches, plan, selection, destination, path, facts_of, block_bytes or BLOCK_BYTES, max_in_flight
        )
        return WindowExport(path, rows, size, time.monotonic() - started, True, staged, blocks, sha256)
    target = target or Target(window_path(destination.prefix, account, integration_id, window))
    progress = _continued(destination, target, checkpoints)
    recorder = ProgressRecorder(progress, checkpoints.record if checkpoints else None)
    uploader = BlockUploader(destination, target.path, recorder, max_in_flight, first_index=target.first_index)
    sink = AlignedBlocks(
        uploader.stage, block_bytes or BLOCK_BYTES, already=progress.bytes, min_last_block=target.min_last_block
    )
    batches = ucd.read_from(
        account,
        window.start,
        window.end,
        progress.position or target.start,
        until=target.until,
        segments=segments() if segments else None,
        event_names=plan.event_names,
        columns=plan.source_columns,
    )
    try:
        rows, complete = _encode(batches, plan, sink, progress, target.header, out_of_time)
        if complete and target.commit:
            uploader.commit()
        else:
            uploader.drain()
    except BaseException:
        _after_failure(uploader, checkpoints, recorder, shared=target.joins is not None or not target.commit)
        raise
    if complete and checkpoints is not None:
        if checkpoints.part is None:
            checkpoints.clear()
        else:
            checkpoints.record(replace(recorder.progress, complete=True))  # a part: kept until the file's commit
    took = time.monotonic() - started
    blocks = recorder.progress.blocks
    return WindowExport(target.path, rows, sink.bytes_written, took, complete, uploader.staged_bytes, blocks)


def continuable(selection: Selection) -> bool:
    """Whether a window's file can stop after a block and be continued (by a follow-up, or in parts).

    Only CSV without a manifest: its blocks end after whole rows, and nothing in the bytes to come
    depends on the bytes before. A gzip stream, a Parquet file's row groups and footer, and a manifest's
    SHA-256 of the whole stream carry state that no block records, so those files are exported whole.
    """
    return selection.format == Format.CSV and not selection.manifest


def _export_whole(
    batches: Iterator[pa.RecordBatch],
    plan: ColumnPlan,
    selection: Selection,
    destination: Destination,
    path: str,
    facts_of: Callable[..., FileFacts],
    block_bytes: int,
    max_in_flight: int,
) -> tuple[int, int, int, int, str | None]:
    """A file that cannot be continued, in one go: its format's encoder, then the manifest if asked for.

    Answers its rows, bytes, bytes staged, blocks and (with a manifest) SHA-256.
    """
    encoder = file_format(selection.format)
    types = column_types(plan, dict(selection.param_types or ()))
    uploader = BlockUploader(destination, path, ProgressRecorder(no_progress(path), None), max_in_flight)
    stage = lambda block: uploader.stage(block, Mark(None, 0, 0))  # noqa: E731 - nothing is recorded per block
    digest = StreamDigest() if selection.manifest else None
    sink = BlockSink(digest.passing(stage) if digest else stage, block_bytes)
    try:
        rows = encoder.encode(batches, plan, types, sink)
        uploader.commit()
    except BaseException:
        uploader.abandon()
        raise
    if digest is None:
        return rows, sink.bytes_written, uploader.staged_bytes, uploader.count, None
    facts = facts_of(encoder.name, rows, sink.bytes_written, digest.hexdigest(), types)
    write_manifest(destination, facts)
    return rows, sink.bytes_written, uploader.staged_bytes, uploader.count, facts.sha256


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


def _encode(
    batches: Iterator[tuple[ReadPosition, pa.RecordBatch]],
    plan: ColumnPlan,
    sink: AlignedBlocks,
    progress: WindowProgress,
    header: bool,
    out_of_time: Callable[[], bool],
) -> tuple[int, bool]:
    """Encode batches into the sink until the end of the window (True) or a block after the time ran out."""
    rows = progress.rows
    position = progress.position
    options = pacsv.WriteOptions(include_header=header and progress.blocks == 0, eol=WRITE_OPTIONS.eol)
    writer = pacsv.CSVWriter(sink, plan.schema, write_options=options)
    try:
        for after, batch in batches:
            for piece, position in _slices(after, batch):
                writer.write_batch(plan.project(piece))
                rows += piece.num_rows
                if sink.mark(position, rows) and out_of_time():
                    return rows, False
    finally:
        writer.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the read's prefetch at once when the time ran out
    sink.finish(position, rows)
    return rows, True


def _slices(after: ReadPosition, batch: pa.RecordBatch) -> Iterator[tuple[pa.RecordBatch, ReadPosition]]:
    """A batch in pieces of at most SLICE_ROWS rows, each with the read position after it."""
    for offset in range(0, batch.num_rows, SLICE_ROWS):
        piece = batch.slice(offset, SLICE_ROWS)
        left = batch.num_rows - offset - piece.num_rows
        yield piece, ReadPosition(after.segment, after.rows - left)
