"""What every format shares: its name, the file name's extension, how its rows are written, and where its
file's blocks may end and what ends the file (`FileCuts`, one per export of a file).

Every format is written a projected batch at a time (`rows`), so the runner can end a block where the
format allows and continue the file from there: a row format (`csv`) after any slice of rows, a gzip
format's only where a gzip member ends (`GzipMarks`, formats/compress.py), `parquet` only where a row
group ends (`ParquetFooter`, formats/parquet_footer.py). A format is its rows writer and its cuts: a
new one (Avro, say) is a module of both and one line in formats/__init__.py's FORMATS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

import pyarrow as pa

from ...errors import InternalError
from ...ucd.reader import ReadPosition
from ...ucd.segments import SegmentRef
from ..blocks import AlignedBlocks, Emit
from ..csv_writer import Writable
from ..plan import ColumnPlan
from ..progress import BlockNotes, ProgressSink, WindowProgress
from .types import ColumnTypes


class Format(StrEnum):
    """The built-in formats' names, as the API names them; the name is also the file name's extension
    (a format registered in FORMATS, formats/__init__.py, needs no name here: its FileFormat's is enough)."""

    CSV = "csv"
    CSV_GZ = "csv.gz"
    PARQUET = "parquet"
    JSONL_GZ = "jsonl.gz"


DEFAULT_FORMAT = Format.CSV


class RowWriter(Protocol):
    """Writes projected batches (the plan's columns, every value the CSV's text) as the format's rows."""

    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


# (the column plan, the columns' types, where the bytes go, whether to write a header) → a RowWriter.
RowsOf = Callable[[ColumnPlan, ColumnTypes, Writable, bool], RowWriter]
Pieces = Iterator[tuple[pa.RecordBatch, ReadPosition]]  # rows, each with the read position after it


@dataclass(frozen=True)
class FileStart:
    """Where one export of a file (or of a part of one) begins: its columns, and the blocks recorded before it."""

    plan: ColumnPlan
    types: ColumnTypes
    progress: WindowProgress  # the file's blocks recorded so far (none: this export writes its start)
    header: bool  # this export writes the file's first bytes (a whole file's start, or a split file's first part's)
    whole_window: bool  # the file is the window's, not a part of a split window
    listing: Callable[[], list[SegmentRef]]  # the window's whole listing, listed once (only if asked)
    recorded: bool = False  # each block's progress is recorded, for a continuation
    notes: BlockNotes | None = None  # where each block's note is kept beside its progress


class FileCuts:
    """Where one file's blocks may end, and what ends the file; as is, a row format's: after any slice of rows.

    One per export of a file (whole, a part, or a continuation), made by its format (`FileFormat.begin`),
    which raises CannotContinue if the recorded blocks cannot be continued. `handing_on` and `recording`
    wrap the hand-on of each cut block and each progress record (a format that keeps something per
    block); `open` gives the rows' writer into the sink (`writer`); `segment_begins` (before a batch of a segment)
    and `mark` (after a slice of rows) mark where a block may end, True when one was cut there;
    `pieces` cuts the slices where the format must; `finish` writes the file's end and its last block.
    """

    in_parts: ClassVar[bool] = True  # the file can be written in parts by several workers, concatenated in order
    keeps_notes: ClassVar[bool] = False  # each block keeps a note beside its progress

    @staticmethod
    def part_starts(segments: Sequence[SegmentRef]) -> list[int]:
        """The segments after the first that a part of a split window may begin at: any, for a row format."""
        return list(range(1, len(segments)))

    def __init__(self, rows: RowsOf, start: FileStart):
        self.rows = rows
        self.start = start
        self._sink: AlignedBlocks | None = None

    @property
    def sink(self) -> AlignedBlocks:
        if self._sink is None:
            raise InternalError("a file's blocks are marked before it is opened")
        return self._sink

    def handing_on(self, emit: Emit) -> Emit:
        return emit

    def recording(self, record: ProgressSink) -> ProgressSink:
        return record

    def open(self, sink: AlignedBlocks) -> RowWriter:
        """Begin writing the file's rows into `sink`, where the blocks are cut (`mark`)."""
        self._sink = sink
        return self.writer(sink)

    def writer(self, sink: AlignedBlocks) -> RowWriter:
        """The rows' writer into the sink (a format that filters its bytes, or continues a writer, its own)."""
        return self.rows(self.start.plan, self.start.types, sink, self.start.header)

    def segment_begins(self, segment: str, position: ReadPosition | None, rows: int) -> bool:
        return False

    def pieces(self, pieces: Pieces, rows: int) -> Pieces:
        return pieces

    def mark(self, position: ReadPosition, rows: int) -> bool:
        return self.sink.mark(position, rows)

    def finish(self, position: ReadPosition | None, rows: int) -> None:
        self.sink.finish(position, rows)


@dataclass(frozen=True)
class FileFormat:
    """One format: how a window's batches become the file's bytes, and where its blocks may end."""

    name: str  # as the API names it; also the file name's extension
    typed: bool  # its bytes depend on the columns' types (the catalog's parameter kinds)
    rows: RowsOf
    cuts: type[FileCuts] = FileCuts
    content_type: str = "application/octet-stream"  # what the destination tells a reader the file is

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "name", str(self.name)
        )  # a Format's plain text: what the API, the record and a manifest hold

    @property
    def extension(self) -> str:
        return self.name

    def begin(self, start: FileStart) -> FileCuts:
        """The cuts and end of one export of a file; CannotContinue if its recorded blocks cannot be continued."""
        return self.cuts(self.rows, start)

    @property
    def in_parts(self) -> bool:
        return self.cuts.in_parts

    @property
    def keeps_notes(self) -> bool:
        return self.cuts.keeps_notes

    def part_starts(self, segments: Sequence[SegmentRef]) -> list[int]:
        return self.cuts.part_starts(segments)
