"""`python -m bench.segment_formats [SEGMENTS]`: the segment layouts' bytes and read CPU, side by side.

Encodes the bench's segment tables (`bench.data.segment_table`, 30,000 rows each) as version 2
(Arrow IPC, rows by event id, read with an event-name filter) and as version 3 (what the store writes:
rows by event name, wanted batches sliced), then reads the export's selection from each with
`segment_batches`, fastest of seven, in CPU seconds of this process (no storage involved). A last row
writes version 3 with lz4_frame buffers instead of zstd (not what the store writes: docs/benchmarks.md
says why), for the codec's bytes against its decode CPU; and each row's encode CPU (the ingest's share).
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa
import pyarrow.ipc as ipc

from exporter.ucd.segments import BATCH_ROWS, FIXED_COLUMNS, encode_table, segment_batches

from . import data


def version_2(table: pa.Table) -> bytes:
    """The bytes version 2 wrote: rows by event id, batches of `BATCH_ROWS`, no layout metadata."""
    table = table.sort_by([("event_id", "ascending")])
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    return sink.getvalue().to_pybytes()


def version_3_lz4(table: pa.Table) -> bytes:
    """Version 3 with lz4_frame buffers: the same batches and layout, another codec."""
    return encode_table(table, codec="lz4")


def encode_cpu(encode, tables: list[pa.Table]) -> tuple[float, list[bytes]]:
    """The CPU time of encoding every table, and the blobs."""
    cpu = time.process_time()
    blobs = [encode(t) for t in tables]
    return time.process_time() - cpu, blobs


def read_cpu(blobs: list[bytes], repeats: int = 7) -> tuple[float, int]:
    """The fastest CPU time of reading the export's selection from every blob, and the rows read."""
    columns = list(FIXED_COLUMNS) + data.selection_columns()
    names = frozenset(data.selection_names())
    best, rows = float("inf"), 0
    for _ in range(repeats):
        cpu = time.process_time()
        rows = sum(b.num_rows for blob in blobs for b in segment_batches(blob, columns, names)[1])
        best = min(best, time.process_time() - cpu)
    return best, rows


def main(argv: list[str]) -> int:
    segments = int(argv[0]) if argv else 6
    tables = [data.segment_table(i, 30_000, 0) for i in range(segments)]
    print(
        f"{segments} segments of 30,000 rows; selection: {len(data.selection_names())} of {len(data.EVENT_NAMES)} names"
    )
    for label, encode in (
        ("version 2: by event id, filtered", version_2),
        ("version 3: by event name, sliced", encode_table),
        ("version 3, lz4_frame buffers", version_3_lz4),
    ):
        written, blobs = encode_cpu(encode, tables)
        cpu, rows = read_cpu(blobs)
        print(
            f"  {label:34} {sum(map(len, blobs)) / 1e6:6.2f} MB   read {cpu * 1000:6.1f} ms CPU   {rows:,} rows   "
            f"(encode {written * 1000:6.1f} ms CPU)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
