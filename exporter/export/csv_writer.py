"""Arrow batches → RFC 4180 CSV bytes, cut into fixed-size blocks (pyarrow's writer, no per-row Python)."""
from __future__ import annotations

from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.csv as pacsv

from .plan import ColumnPlan

# Strings are always quoted by Arrow's writer; nulls are bare empty cells, so null and "" stay distinct.
WRITE_OPTIONS = pacsv.WriteOptions(include_header=True, eol="\r\n")
BLOCK_BYTES = 8 * 1024 * 1024


class BlockSink:
    """A write-only file that hands on exactly `block_bytes` at a time (the last block may be shorter).

    Cutting at fixed offsets keeps the block list a function of the bytes alone, so a retry stages
    the same blocks under the same ids.
    """

    def __init__(self, emit: Callable[[bytes], None], block_bytes: int = BLOCK_BYTES):
        self._emit = emit
        self._block_bytes = block_bytes
        self._buffer = bytearray()
        self.bytes_written = 0
        self.closed = False

    def write(self, data) -> int:
        self._buffer += data
        self.bytes_written += len(data)
        while len(self._buffer) >= self._block_bytes:
            self._emit(bytes(self._buffer[: self._block_bytes]))
            del self._buffer[: self._block_bytes]
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()


def write_csv(batches: Iterable[pa.RecordBatch], plan: ColumnPlan, sink: BlockSink) -> int:
    """Write the header and every batch through the plan; return the row count."""
    rows = 0
    writer = pacsv.CSVWriter(sink, plan.schema, write_options=WRITE_OPTIONS)
    try:
        for batch in batches:
            writer.write_batch(plan.project(batch))
            rows += batch.num_rows
    finally:
        writer.close()
    sink.finish()
    return rows
