"""gzip in front of a sink, as a sequence of gzip members: zlib streaming, so only zlib's window is held.

RFC 1952 allows a file of several members, and every gzip reader (gzip, zcat, Python's gzip, pandas,
DuckDB) reads their concatenation as one stream. A member holds no state of the one before, so a file
whose members end exactly where its blocks may end can be continued (or written in parts) from any
block: a gzip format's cuts (`GzipMarks`) end a member at the end of a segment once the member covers
`MEMBER_SEGMENT_BYTES` of stored segments (`member_groups`) and, inside a segment, at the first slice
of rows after `MEMBER_BYTES` of compressed bytes; a block ends only where a member does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

from ...errors import InternalError
from ...ucd.reader import ReadPosition
from ...ucd.segments import SegmentRef
from ..blocks import SLICE_ROWS, AlignedBlocks
from ..csv_writer import Writable
from .base import FileCuts, FileStart, RowsOf, RowWriter

GZIP_LEVEL = 6  # gzip's own default: the usual balance of size and speed
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer: mtime 0, no file name, so the bytes are deterministic
# A member ends inside a segment once this much of it is compressed: large enough that its 18 bytes of
# header and trailer and its fresh dictionary cost nothing measurable, small enough that a block (which
# ends only where a member does) exceeds the block size by at most about this.
MEMBER_BYTES = 1024 * 1024
# A member ends at a segment's end only once the segments it covers hold this many stored bytes (their
# `SegmentRef.size`), so small segments (a platform's small upserts) share a member. Measured by
# `python -m bench.gzip_members` (docs/architecture.md has the table): segments of 10, 30, 100 and
# 1,000 events cost the file 0.7 %, 0.3 %, 0.1 % and 0.02 % at this size, against 64 %, 28 %, 10 % and
# 0.6 % with a member per segment. A member of such segments compresses to about 0.65 MiB (below
# MEMBER_BYTES, the bound the inside-a-segment rule already sets), so a block still exceeds its size by
# at most about one member; a part may begin only where a member does, under 1 MiB of stored bytes
# before where it could begin otherwise (parts are 1 GiB).
# 2 MiB would halve what is left (0.36 % for 10 events) for members of up to 1.3 MiB, over that bound.
MEMBER_SEGMENT_BYTES = 1024 * 1024


def member_groups(sizes: Iterable[int], least: int | None = None) -> list[int]:
    """The gzip member each of a window's segments begins in (by its stored size alone, in read order).

    A member may end at a segment's end only once it covers `least` bytes of stored segments; segment i
    begins a member where its group differs from segment i - 1's. Stored sizes never change, so every
    export of the window, whole, continued or in parts, computes the same groups from its listing.
    """
    least = MEMBER_SEGMENT_BYTES if least is None else least  # read when called: a test may set it
    groups, group, covered = [], 0, 0
    for size in sizes:
        groups.append(group)
        covered += size
        if covered >= least:
            group, covered = group + 1, 0
    return groups


class GzipMembers:
    """A write-only file that gzips what it is given into `inner`, one member until `end_member()`."""

    def __init__(self, inner: Writable, level: int = GZIP_LEVEL):
        self._inner = inner
        self._level = level
        self._compressor: zlib._Compress | None = None  # the open member, if any byte went in since the last
        self.member_bytes = 0  # compressed bytes of the open member handed on so far
        self.closed = False

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if not size:
            return 0  # no member is opened for nothing: an empty member would be 20 bytes of noise
        if self._compressor is None:
            self._compressor = zlib.compressobj(self._level, zlib.DEFLATED, GZIP_WBITS)
        self._hand_on(self._compressor.compress(data))
        return size

    def flush(self) -> None:
        pass  # a flush would cut the deflate stream where the writer happened to flush: never deterministic

    def end_member(self) -> None:
        """Close the open member (the rest of its deflate stream and its trailer); the next write opens another."""
        if self._compressor is None:
            return
        self._hand_on(self._compressor.flush(zlib.Z_FINISH))
        self._compressor, self.member_bytes = None, 0

    def empty_member(self) -> None:
        """A member of no bytes: what a file with nothing in it must still hold to be a gzip file."""
        self._hand_on(zlib.compressobj(self._level, zlib.DEFLATED, GZIP_WBITS).flush(zlib.Z_FINISH))

    def _hand_on(self, compressed: bytes) -> None:
        if compressed:
            self._inner.write(compressed)
            self.member_bytes += len(compressed)


class GzipMarks(FileCuts):
    """Where a gzip row format's blocks may end: only where a gzip member ends.

    A member ends between two segments of different member groups (`member_groups`: once it covers
    `MEMBER_SEGMENT_BYTES` of the window's stored segments) and, inside a segment, at a multiple of
    SLICE_ROWS of its rows once `MEMBER_BYTES` of the member are compressed. Both depend on the
    window's listing and the segments' rows alone, not on where this read began, where a block ended
    or how the read batched a segment: an export continued from any block (a member end), and a part of
    a split window (which begins where a group does, `part_starts`), write exactly the members of an
    export in one go. A block ends at a member end once it holds block_bytes.
    """

    @staticmethod
    def part_starts(segments: Sequence[SegmentRef]) -> list[int]:
        """A part begins only where a member does (the groups of the same sizes), so it writes whole members."""
        groups = member_groups(ref.size for ref in segments)
        return [i for i in range(1, len(segments)) if groups[i] != groups[i - 1]]

    def __init__(self, rows: RowsOf, start: FileStart):
        super().__init__(rows, start)
        segments = start.listing()  # the whole window's: a part's or a continuation's groups are a one-go export's
        self._group = dict(zip([ref.path for ref in segments], member_groups(ref.size for ref in segments)))
        self.members: GzipMembers | None = None

    def writer(self, sink: AlignedBlocks) -> RowWriter:
        self.members = GzipMembers(sink)
        return self.rows(self.start.plan, self.start.types, self.members, self.start.header)

    def segment_begins(self, segment: str, position: ReadPosition | None, rows: int) -> bool:
        """Before a batch of `segment`: a member ends if a group began since the last; True if a block was cut."""
        if position is None or self._group[position.segment] == self._group[segment]:
            return False
        self._members().end_member()
        return self.sink.mark(position, rows)

    def mark(self, position: ReadPosition, rows: int) -> bool:
        """After a slice: True if a member, then a block, ended here."""
        members = self._members()
        if position.rows % SLICE_ROWS or members.member_bytes < MEMBER_BYTES:
            return False
        members.end_member()
        return self.sink.mark(position, rows)

    def finish(self, position: ReadPosition | None, rows: int) -> None:
        members = self._members()
        members.end_member()
        if self.start.whole_window and self.sink.bytes_written == 0:
            members.empty_member()  # a window without a byte (JSON Lines has no header) is still a gzip file
        self.sink.finish(position, rows)

    def _members(self) -> GzipMembers:
        if self.members is None:
            raise InternalError("a gzip file's members are marked before it is opened")
        return self.members
