"""A Parquet file's cut points and its footer, in pieces (`ParquetFooter`): a block ends only where a row
group ends, and the footer is assembled at the file's end from the RowGroups of every block before it,
this invocation's and (a continuation) those an earlier one recorded as each block's note.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ...errors import InternalError, TransientError
from ...ucd.reader import ReadPosition
from ...ucd.segments import SegmentRef
from ..blocks import AlignedBlocks, Emit, Mark
from ..progress import CannotContinue, ProgressSink, WindowProgress
from . import parquet
from .base import FileCuts, FileFormat, FileStart, Format, Pieces, RowsOf, RowWriter

NOTE_THREADS = 8  # a continued Parquet file's block notes are read (and each block's written) this many at once

# Threads start on demand and serve every export of the process: note reads and writes are small and brief.
_NOTES = ThreadPoolExecutor(NOTE_THREADS, thread_name_prefix="notes")


class ParquetFooter(FileCuts):
    """A Parquet file's footer, in pieces: a block's piece is the RowGroups (`ParquetRows`) that end in it.

    With checkpoints, each piece is the block's note (`BlockNotes`), written (in the background, as the
    block is handed on) before the block's progress is recorded, so a continuation reads back the pieces
    of every block before it (in the background too: the footer needs them only at the file's end); a
    Parquet file's blocks end only where a row group ends (`mark`, `pieces`). The last block's progress
    is never recorded (the commit follows), so a continuation always has the footer still to write.
    A file is never written in parts: its footer covers every row group, and its row groups are counted
    from the file's first row, which a part beginning at a segment cannot know.
    """

    in_parts = False
    keeps_notes = True

    @staticmethod
    def part_starts(segments: Sequence[SegmentRef]) -> list[int]:
        return []

    def __init__(self, rows: RowsOf, start: FileStart):
        super().__init__(rows, start)
        progress, notes = start.progress, start.notes
        if start.recorded and notes is None:
            raise InternalError("a Parquet file's progress is recorded with its block notes")
        if progress.blocks and notes is None:
            raise InternalError("a Parquet file continued without its block notes")
        if progress.blocks and notes is not None and notes.kept() < progress.blocks:
            raise CannotContinue("the footer notes of a Parquet file are gone")  # expired: past the lifecycle rule
        # The notes of the recorded blocks, being read.
        self._earlier: list[Future[bytes | None]] = [
            _NOTES.submit(notes.get, b) for b in range(progress.blocks) if notes is not None
        ]
        self._pieces: dict[int, bytes] = {}  # this invocation's blocks' pieces, by block
        self._written: dict[int, Future[None]] = {}  # their notes, being written
        self._notes = notes
        self._next = progress.blocks  # the next block handed on
        self._stored = progress.blocks  # the notes of the blocks before this one are stored
        self._lock = threading.Lock()
        self._writer: parquet.ParquetRows | None = None

    def writer(self, sink: AlignedBlocks) -> RowWriter:
        """The file's row-group writer, continuing after the recorded blocks (which end where row groups do)."""
        progress = self.start.progress
        groups = progress.rows // parquet.ROW_GROUP_ROWS
        self._writer = parquet.ParquetRows(
            self.start.plan, self.start.types, sink, progress.blocks == 0, sink.bytes_written, groups
        )
        return self._writer

    def handing_on(self, emit: Emit) -> Emit:
        """`emit`, keeping each block's piece first: the row groups that end within its bytes (blocks come in order)."""

        def through(block: bytes, mark: Mark) -> None:
            if self._writer is None:
                raise InternalError("a Parquet block before its writer")
            piece = b"".join(self._writer.take_ended(mark.bytes))
            with self._lock:
                index, self._next = self._next, self._next + 1
                self._pieces[index] = piece
                if self._notes is not None and not mark.last:  # the last block is never recorded: no note needed
                    self._written[index] = _NOTES.submit(self._notes.put, index, piece)
            emit(block, mark)

        return through

    def recording(self, record: ProgressSink) -> ProgressSink:
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

    def pieces(self, pieces: Pieces, rows: int) -> Pieces:
        """The pieces, each cut where a row group of the file ends (`rows`: the file's rows before them)."""
        group = parquet.ROW_GROUP_ROWS
        for piece, after in pieces:
            offset = 0
            while offset < piece.num_rows:
                take = min(piece.num_rows - offset, group - rows % group)
                offset += take
                rows += take
                yield (
                    piece.slice(offset - take, take),
                    ReadPosition(after.segment, after.rows - (piece.num_rows - offset)),
                )

    def mark(self, position: ReadPosition, rows: int) -> bool:
        """A block may end only where a row group ends (after every ROW_GROUP_ROWS rows of the file)."""
        return rows % parquet.ROW_GROUP_ROWS == 0 and self.sink.mark(position, rows)

    def finish(self, position: ReadPosition | None, rows: int) -> None:
        """The last row group and the footer, then the last block."""
        if self._writer is None:
            raise InternalError("a Parquet file finished before its writer")
        self._writer.finish(rows, self._handed_on)
        self.sink.finish(position, rows)

    def _handed_on(self) -> list[bytes]:
        """The pieces of the blocks handed on so far, in order: the recorded blocks' notes, then this invocation's."""
        earlier = [future.result() for future in self._earlier]
        if any(note is None for note in earlier):
            raise TransientError("a block note of a Parquet file vanished while it was continued")
        with self._lock:
            return [note for note in earlier if note is not None] + [self._pieces[b] for b in sorted(self._pieces)]


PARQUET = FileFormat(
    Format.PARQUET,
    typed=True,
    rows=parquet.ParquetRows,
    cuts=ParquetFooter,
    content_type="application/vnd.apache.parquet",
)
