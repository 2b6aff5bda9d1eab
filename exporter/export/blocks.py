"""A window file's blocks: cut only where the caller marks a read position (`AlignedBlocks`), so every block
ends after a whole row, at a place a later invocation can continue from; blocks staged are handed back
for reuse (`SpareBlocks`). Where a format lets a block end, and what ends its file, is the format's
(exporter/export/formats/cuts.py)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pyarrow as pa

from ..ucd.reader import ReadPosition

SPARE_BLOCKS = 2  # staged blocks kept for reuse: the encoder cuts one as a stage thread frees another
SLICE_ROWS = 8_192  # a block may end after every SLICE_ROWS rows of a segment: it exceeds block_bytes by at most this


@dataclass(frozen=True)
class Mark:
    """Where a block ends: the read position after its last row, and the file's rows and bytes up to it."""

    position: ReadPosition | None
    rows: int
    bytes: int
    last: bool = False  # the file's (or part's) last block: its commit, or the part's complete record, follows
    digest: builtins.bytes = b""  # a file with a manifest: the SHA-256 state after this block


Emit = Callable[[bytes, Mark], None]  # hands on a cut block and where it ends


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

    def __init__(self, emit: Emit, block_bytes: int, already: int = 0, min_last_block: int = 0):
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


def slices(after: ReadPosition, batch: pa.RecordBatch) -> Iterator[tuple[pa.RecordBatch, ReadPosition]]:
    """A batch in pieces, each with the read position after it: a piece ends at every multiple of
    SLICE_ROWS rows of the segment and at the batch's end, so a gzip member's possible ends
    (`GzipMarks`) fall on the same rows however the read batched the segment."""
    first = after.rows - batch.num_rows  # the segment's rows before this batch
    offset = 0
    while offset < batch.num_rows:
        take = min(batch.num_rows - offset, SLICE_ROWS - (first + offset) % SLICE_ROWS)
        yield batch.slice(offset, take), ReadPosition(after.segment, first + offset + take)
        offset += take
