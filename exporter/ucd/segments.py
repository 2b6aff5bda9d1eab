"""Event segments: one file per accepted batch, named by the entry time it was stamped with.

Path: `{account}/events/{YYYY}/{MM}/{DD}/{HH}/{entry_ms:013d}-{segment_id}.arrow` (`.parquet` for
segments stored before version 2). The entry hour in
the path lets a window list only the hours it covers; the entry time in the name lets it skip whole
segments without opening them, and orders them (entry time, then segment id) without a sort of rows.
Rows inside a segment are in a fixed order (below), so a window's row order is fixed by stored data alone.

Formats, told apart by the file's first bytes and the schema's metadata (an intent records its
segment's whole path, so the suffix is only for people reading a listing):
- version 3, written now: an Arrow IPC file (`ARROW1`), zstd-compressed buffers, rows sorted by
  (event name, event id) and cut into record batches at event-name boundaries (`batch_cuts`); the
  schema's `LAYOUT_KEY` metadata lists each event name's run of rows and each batch's rows. A read
  decompresses only the columns it asks for, only in the batches holding an event name it wants, and
  hands on the wanted rows as slices: nothing is filtered or copied (docs/architecture.md, "Segment format").
  The event-name column itself is never decompressed: a read makes it from the runs.
- version 2: the same file without the metadata, rows sorted by event id in batches of up to
  `BATCH_ROWS`; read with an event-name filter.
- version 1: Parquet (`PAR1`), zstd, row groups of 16,384 rows, rows sorted by event id. Still read.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

FIXED_COLUMNS = ("event_id", "user_id", "event_name", "timestamp")
PARAM_PREFIX = "p:"
ATTRIBUTE_PREFIX = "a:"
BATCH_ROWS = 65_536  # most rows in one record batch (a segment of a request holds up to 50,000)
# An event name with at least this many rows gets batches of its own (a read skips them whole when it does
# not want that name); rarer names share batches up to about this size, which a read slices.
NAME_BATCH_ROWS = 4_096
LAYOUT_KEY = b"ucd.layout"  # version 3: {"runs": [[event name, rows], ...], "batches": [rows, ...]}
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
    size: int = field(default=0, compare=False)  # bytes of the segment's blob, when known from a listing

    @property
    def entry_time(self) -> datetime:
        return datetime.fromtimestamp(self.entry_ms / 1000, tz=timezone.utc)


SUFFIX = ".arrow"  # version 2 and 3 segments
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
    """Rows (dicts keyed by column name) → the bytes of a version-3 segment, every column a string."""
    columns = (
        list(FIXED_COLUMNS)
        + [param_column(k) for k in sorted(set(param_keys))]
        + [attribute_column(k) for k in sorted(set(attribute_keys))]
    )
    ordered = sorted(rows, key=lambda r: (r["event_name"] or "", r["event_id"] or ""))  # every row has both
    table = pa.table({name: pa.array([r.get(name) for r in ordered], type=pa.string()) for name in columns})
    return encode_table(table)


def encode_table(table: pa.Table, codec: str = "zstd") -> bytes:
    """A table sorted by (event_name, event_id) → the bytes of a version-3 segment (Arrow IPC, zstd).

    `codec`: the store writes zstd; another (lz4) is only for the bench's comparison (docs/benchmarks.md says
    why zstd stays: lz4 decodes faster but its bytes, 1.8 times as many, cost the download more than that).
    """
    table = table.combine_chunks()
    runs = name_runs(table.column("event_name"))
    cuts = batch_cuts([rows for _name, rows in runs])
    layout = json.dumps({"runs": runs, "batches": cuts}, separators=(",", ":")).encode()
    schema = table.schema.with_metadata({LAYOUT_KEY: layout})
    sink = pa.BufferOutputStream()
    options = ipc.IpcWriteOptions(compression=codec)
    with ipc.new_file(sink, schema, options=options) as writer:
        offset = 0
        for rows in cuts:
            writer.write_batch(table.slice(offset, rows).to_batches()[0].replace_schema_metadata(None))
            offset += rows
    return sink.getvalue().to_pybytes()


def name_runs(names: pa.ChunkedArray | pa.Array) -> list[list]:
    """The runs of equal event names in a sorted column: [[name, rows], ...] in row order."""
    if len(names) == 0:
        return []
    encoded = pc.run_end_encode(names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names)
    ends = encoded.run_ends.to_pylist()
    return [[name, end - start] for name, start, end in zip(encoded.values.to_pylist(), [0] + ends, ends)]


def batch_cuts(run_rows: list[int]) -> list[int]:
    """The rows of each record batch, given the rows of each event-name run in order.

    A batch ends at a run boundary once it holds `NAME_BATCH_ROWS` rows, or before a run that large,
    and never exceeds `BATCH_ROWS`: a common name's rows are batches of their own, rare names share one.
    """
    cuts: list[int] = []
    current = 0
    for rows in run_rows:
        if current and (current >= NAME_BATCH_ROWS or rows >= NAME_BATCH_ROWS):
            cuts.append(current)
            current = 0
        while current + rows > BATCH_ROWS:
            take = BATCH_ROWS - current
            cuts.append(BATCH_ROWS)
            rows -= take
            current = 0
        current += rows
    if current:
        cuts.append(current)
    return cuts


def wanted_slices(runs: list[list], cuts: list[int], names: Collection[str]) -> Iterator[tuple[int, int, int]]:
    """(batch index, first row in the batch, rows) of every run of wanted names, batch by batch, in row order.

    Adjacent wanted runs are one slice; a batch without a wanted row is not named at all.
    """
    ranges: list[list[int]] = []  # [first, end) rows of the segment
    row = 0
    for name, rows in runs:
        if name in names:
            if ranges and ranges[-1][1] == row:
                ranges[-1][1] += rows
            else:
                ranges.append([row, row + rows])
        row += rows
    r = 0
    batch_start = 0
    for index, rows in enumerate(cuts):
        batch_end = batch_start + rows
        while r < len(ranges) and ranges[r][0] < batch_end:
            first, end = max(ranges[r][0], batch_start), min(ranges[r][1], batch_end)
            yield index, first - batch_start, end - first
            if ranges[r][1] > batch_end:
                break  # the range goes on in the next batch
            r += 1
        batch_start = batch_end


def segment_batches(
    data: bytes, columns: Iterable[str], event_names: Collection[str] | None = None
) -> tuple[set[str], Iterator[pa.RecordBatch]]:
    """The segment's columns among `columns` (those it has) and its rows of `event_names` (None: all) in
    batches of exactly them, in row order.

    Every version; only the asked columns are decompressed and decoded, one batch at a time; a version-3
    segment decompresses only the batches holding a wanted name and filters nothing.
    """
    source = pa.py_buffer(data)
    if data[: len(ARROW_MAGIC)] == ARROW_MAGIC:
        schema = ipc.open_file(source).schema
        present = [n for n in columns if n in schema.names]
        layout = (schema.metadata or {}).get(LAYOUT_KEY)
        if layout is not None:  # version 3: the layout's runs name every row, the column is never decompressed
            read = [n for n in present if n != "event_name"]
        else:
            read = _with_event_name(present, event_names)
        fields = sorted(schema.names.index(n) for n in read)
        reader = ipc.open_file(source, options=ipc.IpcReadOptions(use_threads=False, included_fields=fields))
        if layout is not None:
            # Where the made event-name column goes among the read ones: its place in the file.
            at = len([n for n in read if schema.names.index(n) < schema.names.index("event_name")])
            names_at = at if "event_name" in present else None
            return set(present), _layout_batches(reader, json.loads(layout), event_names, names_at, bool(fields))
        batches: Iterator[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
    elif data[: len(PARQUET_MAGIC)] == PARQUET_MAGIC:
        parquet = pq.ParquetFile(pa.BufferReader(source))
        present = [n for n in columns if n in parquet.schema_arrow.names]
        # One thread per segment: window reads already decode segments side by side.
        batches = parquet.iter_batches(
            batch_size=BATCH_ROWS, columns=_with_event_name(present, event_names), use_threads=False
        )
    else:
        raise ValueError("not a UCD segment (neither Arrow IPC nor Parquet)")
    return set(present), _filtered(batches, present, event_names)


def _layout_batches(
    reader: ipc.RecordBatchFileReader,
    layout: dict,
    event_names: Collection[str] | None,
    names_at: int | None,
    stored: bool,
) -> Iterator[pa.RecordBatch]:
    """A version-3 segment's rows of the wanted names: zero-copy slices of only the batches that hold them, the
    event name (if asked for: `names_at`, its column's place) made from the layout's runs, not decompressed.
    `stored`: columns besides the event name are read from the file."""
    runs, cuts = layout["runs"], layout["batches"]
    if event_names is None:
        slices: Iterable[tuple[int, int, int]] = ((index, 0, rows) for index, rows in enumerate(cuts))
    else:
        slices = wanted_slices(runs, cuts, frozenset(event_names))
    starts, ends = _running_sums(cuts), _running_sums([rows for _name, rows in runs])
    loaded: tuple[int, pa.RecordBatch] | None = None
    for index, first, rows in slices:
        if stored and (loaded is None or loaded[0] != index):
            loaded = (index, reader.get_batch(index))
        if names_at is None:
            assert loaded is not None
            yield loaded[1].slice(first, rows)
            continue
        names = names_of_rows(runs, ends, starts[index] + first, rows)
        if loaded is None:
            yield pa.RecordBatch.from_arrays([names], names=["event_name"])
        else:
            yield loaded[1].slice(first, rows).add_column(names_at, "event_name", names)


def _running_sums(counts: list[int]) -> list[int]:
    """0, then the running sums of `counts`: where each run (or batch) begins, and the end of the last."""
    sums = [0]
    for count in counts:
        sums.append(sums[-1] + count)
    return sums


def names_of_rows(runs: list[list], ends: list[int], first: int, rows: int) -> pa.Array:
    """The event-name column of rows [first, first + rows) of a segment, from its runs (`ends`: where each run
    begins, and the end of the last): each run's name repeated; no buffer of the file decompressed."""
    at = bisect.bisect_right(ends, first) - 1  # the run holding row `first`
    parts = []
    while at < len(runs) and ends[at] < first + rows:
        parts.append(_repeated(runs[at][0], min(ends[at + 1], first + rows) - max(ends[at], first)))
        at += 1
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def _repeated(name: str, rows: int) -> pa.Array:
    """`name` `rows` times as a string array: its bytes repeated, the offsets of its width shared."""
    text = name.encode()
    return pa.Array.from_buffers(pa.string(), rows, [None, _offsets(len(text), rows), pa.py_buffer(text * rows)])


def _offsets(width: int, rows: int) -> pa.Buffer:
    """Offsets 0, width, 2 x width, ... for at least `rows` strings (a longer buffer serves a shorter array):
    a batch's worth, since a slice is within one batch."""
    return _offsets_of(width, max(rows, BATCH_ROWS))


@functools.lru_cache(maxsize=16)  # a batch's worth is 256 KiB: at most 4 MiB for the widths of the names in use
def _offsets_of(width: int, rows: int) -> pa.Buffer:
    return pc.multiply_checked(pa.array(range(rows + 1), pa.int32()), pa.scalar(width, pa.int32())).buffers()[1]


def _with_event_name(present: list[str], event_names: Collection[str] | None) -> list[str]:
    """The columns to read for a filter by event name: the event name too, if it was not asked for."""
    return present if event_names is None or "event_name" in present else present + ["event_name"]


def _filtered(
    batches: Iterable[pa.RecordBatch], present: list[str], event_names: Collection[str] | None
) -> Iterator[pa.RecordBatch]:
    """Versions 1 and 2: the rows of the wanted names, by a filter (rows sorted by event id mix every name)."""
    if event_names is None:
        yield from batches
        return
    wanted = pa.array(sorted(event_names), pa.string())
    for batch in batches:
        kept = batch.filter(pc.is_in(batch.column("event_name"), value_set=wanted))
        if kept.num_rows:
            yield kept.select(present)


def segment_column(data: bytes, column: str) -> list[str | None]:
    """One column of a segment (any version) as Python values."""
    _present, batches = segment_batches(data, [column])
    return [value for batch in batches for value in batch.column(column).to_pylist()]


def to_ms(when: datetime) -> int:
    """An instant as whole milliseconds since the epoch, the unit of entry times."""
    return int(round(when.timestamp() * 1000))
