"""The encode loop: a window's batches, projected and sliced, written as the format's rows into the block
sink, a block cut wherever the format lets one end (`FileCuts`), until the window's end or, once the
time has run out, the first block cut after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa

from ..ucd.reader import ReadPosition
from .blocks import AlignedBlocks, slices
from .formats.base import FileCuts
from .plan import ColumnPlan
from .progress import WindowProgress


def encode(
    batches: Iterator[tuple[ReadPosition, pa.RecordBatch]],
    plan: ColumnPlan,
    cuts: FileCuts,
    sink: AlignedBlocks,
    progress: WindowProgress,
    out_of_time: Callable[[], bool],
    stopping: Callable[[int], None] = lambda rows: None,
) -> tuple[int, bool]:
    """Encode batches into the sink until the end of the window (True) or a block after the time ran out;
    answer the file's rows so far too. `stopping(rows)`: told once the time ran out, its last block handed
    on, before the read's prefetch is stopped (what it starts runs while that and the last blocks end)."""
    rows = progress.rows
    position = progress.position
    writer = cuts.open(sink)
    try:
        for after, batch in batches:
            if cuts.segment_begins(after.segment, position, rows) and out_of_time():
                sink.release()
                stopping(rows)
                return rows, False
            # Projected once, sliced without copies, cut where the format must.
            for piece, position in cuts.pieces(slices(after, plan.project(batch)), rows):
                writer.write(piece)
                rows += piece.num_rows
                if cuts.mark(position, rows) and out_of_time():
                    sink.release()
                    stopping(rows)
                    return rows, False
    finally:
        writer.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stops the read's prefetch at once when the time ran out
    cuts.finish(position, rows)
    return rows, True
