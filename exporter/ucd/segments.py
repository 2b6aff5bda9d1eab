"""Event segments: one Parquet file per accepted batch, named by the entry time it was stamped with.

Path: `{account}/events/{YYYY}/{MM}/{DD}/{HH}/{entry_ms:013d}-{segment_id}.parquet`. The entry hour in
the path lets a window list only the hours it covers; the entry time in the name lets it skip whole
segments without opening them, and orders them (entry time, then segment id) without a sort of rows.
Rows inside a segment are sorted by event_id, so a window's row order is fixed by stored data alone.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

FIXED_COLUMNS = ("event_id", "user_id", "event_name", "timestamp")
PARAM_PREFIX = "p:"
ATTRIBUTE_PREFIX = "a:"
ROW_GROUP_ROWS = 16_384


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


def hour_prefix(account: str, when: datetime) -> str:
    return f"{account}/events/{when:%Y/%m/%d/%H}/"


def segment_path(account: str, entry_ms: int, segment_id: str) -> str:
    entry = datetime.fromtimestamp(entry_ms / 1000, tz=timezone.utc)
    return f"{hour_prefix(account, entry)}{entry_ms:013d}-{segment_id}.parquet"


def parse_segment_name(path: str) -> SegmentRef | None:
    name = path.rsplit("/", 1)[-1]
    if not name.endswith(".parquet") or "-" not in name:
        return None
    entry, segment_id = name[: -len(".parquet")].split("-", 1)
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
    """Rows (dicts keyed by column name) → Parquet bytes, sorted by event_id, every column a string."""
    columns = (
        list(FIXED_COLUMNS)
        + [param_column(k) for k in sorted(set(param_keys))]
        + [attribute_column(k) for k in sorted(set(attribute_keys))]
    )
    ordered = sorted(rows, key=lambda r: r["event_id"] or "")  # every row has its id
    table = pa.table({name: pa.array([r.get(name) for r in ordered], type=pa.string()) for name in columns})
    return encode_table(table)


def encode_table(table: pa.Table) -> bytes:
    """A ready table (already sorted by event_id) → Parquet bytes."""
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ROWS, compression="zstd")
    return sink.getvalue()


def to_ms(when: datetime) -> int:
    """An instant as whole milliseconds since the epoch, the unit of entry times."""
    return int(round(when.timestamp() * 1000))
