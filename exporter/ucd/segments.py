"""Event segments: one file per accepted batch, named by the entry time it was stamped with.

Path: `{account}/events/{YYYY}/{MM}/{DD}/{HH}/{entry_ms:013d}-{segment_id}.arrow` (`.parquet` for
segments stored before version 2). The entry hour in
the path lets a window list only the hours it covers; the entry time in the name lets it skip whole
segments without opening them, and orders them (entry time, then segment id) without a sort of rows.
Rows inside a segment are sorted by event_id, so a window's row order is fixed by stored data alone.

Formats, told apart by the file's first bytes (an intent records its segment's whole path, so
the suffix is only for people reading a listing):
- version 2, written now: an Arrow IPC file (`ARROW1`), zstd-compressed buffers, record batches of up to
  `BATCH_ROWS` rows. A read decompresses only the columns it asks for and decodes nothing else:
  about half the CPU of Parquet for 1.4 x the bytes (docs/architecture.md, "Segment format").
- version 1, segments stored before: Parquet (`PAR1`), zstd, row groups of 16,384 rows. Still read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

FIXED_COLUMNS = ("event_id", "user_id", "event_name", "timestamp")
PARAM_PREFIX = "p:"
ATTRIBUTE_PREFIX = "a:"
BATCH_ROWS = 65_536  # rows per record batch of a version-2 segment (a segment of a request holds up to 50,000)
ARROW_MAGIC = b"ARROW1"
PARQUET_MAGIC = b"PAR1"


def param_column(key: str) -> str:
    return PARAM_PREFIX + key


def attribute_column(key: str) -> str:
    return ATTRIBUTE_PREFIX + key


@dataclass(frozen=True, order=True)
class SegmentRef:
    """A committed segment, known from its blob name alone."""

    entry_ms: int
    segment_id: str
    path: str
    size: int = field(default=0, compare=False)  # bytes of the Parquet blob, when known from a listing

    @property
    def entry_time(self) -> datetime:
        return datetime.fromtimestamp(self.entry_ms / 1000, tz=timezone.utc)


SUFFIX = ".arrow"  # version 2 segments
OLD_SUFFIX = ".parquet"  # version 1 segments, still read


def hour_prefix(account: str, when: datetime) -> str:
    return f"{account}/events/{when:%Y/%m/%d/%H}/"


def segment_path(account: str, entry_ms: int, segment_id: str) -> str:
    entry = datetime.fromtimestamp(entry_ms / 1000, tz=timezone.utc)
    return f"{hour_prefix(account, entry)}{entry_ms:013d}-{segment_id}{SUFFIX}"


def parse_segment_name(path: str) -> SegmentRef | None:
    name = path.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    if not dot or f".{suffix}" not in (SUFFIX, OLD_SUFFIX) or "-" not in stem:
        return None
    entry, segment_id = stem.split("-", 1)
    if not entry.isdigit():
        return None
    return SegmentRef(int(entry), segment_id, path)


def hours_covering(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every clock hour that overlaps [start, end)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def encode_segment(
    rows: Iterable[dict[str, str | None]], param_keys: Iterable[str], attribute_keys: Iterable[str]
) -> bytes:
    """Rows (dicts keyed by column name) → segment bytes, sorted by event_id, every column a string."""
    columns = (
        list(FIXED_COLUMNS)
        + [param_column(k) for k in sorted(set(param_keys))]
        + [attribute_column(k) for k in sorted(set(attribute_keys))]
    )
    ordered = sorted(rows, key=lambda r: r["event_id"] or "")  # every row has its id
    table = pa.table({name: pa.array([r.get(name) for r in ordered], type=pa.string()) for name in columns})
    return encode_table(table)


def encode_table(table: pa.Table) -> bytes:
    """A ready table (already sorted by event_id) → the bytes of a version-2 segment (Arrow IPC, zstd)."""
    sink = pa.BufferOutputStream()
    options = ipc.IpcWriteOptions(compression="zstd")
    with ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    return sink.getvalue().to_pybytes()


def segment_batches(data: bytes, columns: Iterable[str]) -> tuple[set[str], Iterator[pa.RecordBatch]]:
    """The segment's columns among `columns` (those it has) and its batches of exactly them, in row order.

    Either format; only the asked columns are decompressed and decoded, one batch at a time.
    """
    source = pa.py_buffer(data)
    if data[: len(ARROW_MAGIC)] == ARROW_MAGIC:
        names = ipc.open_file(source).schema.names
        present = [n for n in columns if n in names]
        fields = sorted(names.index(n) for n in present)
        options = ipc.IpcReadOptions(use_threads=False, included_fields=fields)
        reader = ipc.open_file(source, options=options)
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    elif data[: len(PARQUET_MAGIC)] == PARQUET_MAGIC:
        parquet = pq.ParquetFile(pa.BufferReader(source))
        present = [n for n in columns if n in parquet.schema_arrow.names]
        # One thread per segment: window reads already decode segments side by side.
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=present, use_threads=False)
    else:
        raise ValueError("not a UCD segment (neither Arrow IPC nor Parquet)")
    return set(present), batches


def segment_column(data: bytes, column: str) -> list[str | None]:
    """One column of a segment (either format) as Python values."""
    _present, batches = segment_batches(data, [column])
    return [value for batch in batches for value in batch.column(column).to_pylist()]


def to_ms(when: datetime) -> int:
    """An instant as whole milliseconds since the epoch, the unit of entry times."""
    return int(round(when.timestamp() * 1000))
