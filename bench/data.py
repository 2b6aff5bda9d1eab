"""The benchmark's deterministic data set: Arrow tables built with numpy, loaded as UCD segments.

Every segment is a pure function of (seed, segment index, rows): the same flags give the same rows,
the same entry times and so the same export bytes. Only the segment ids (uuid4, from
`write_segment`) differ between loads, and they never reach a CSV file.
"""

from __future__ import annotations

import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from azure.storage.blob import ContainerClient

from exporter.local.progress import Progress
from exporter.storage import Storage
from exporter.ucd.segments import SegmentRef, attribute_column, encode_table, param_column, segment_path
from exporter.validation import check_account

T0 = datetime(2026, 11, 28, 0, 0, 0, tzinfo=timezone.utc)
SEED = 20261128

EVENT_NAMES = ["page_view", "email_open", "add_to_cart", "search", "purchase", "login"]
EVENT_WEIGHTS = [0.35, 0.20, 0.15, 0.15, 0.08, 0.07]
# 8 parameters of mixed types (as rendered at ingest: numbers as JSON, booleans true/false, nested JSON).
PARAM_KEYS = ["price", "currency", "quantity", "sku", "is_gift", "tags", "url", "rating"]
PARAMS_OF = {
    "page_view": {"url", "tags"},
    "email_open": {"tags", "url"},
    "add_to_cart": {"price", "currency", "quantity", "sku"},
    "search": {"url", "rating"},
    "purchase": {"price", "currency", "quantity", "sku", "is_gift", "tags"},
    "login": set(),
}
ATTRIBUTE_KEYS = ["email", "country", "plan", "age"]
USERS = 200_000

# What the benchmark exports: 3 event names, 4 parameters (url only for page_view), 1 attribute.
SELECTION_EVENTS = [
    {"name": "purchase", "params": ["price", "currency", "quantity"]},
    {"name": "add_to_cart", "params": ["price", "currency", "quantity"]},
    {"name": "page_view", "params": ["url"]},
]
SELECTION_ATTRIBUTES = ["email"]


def selection_names() -> list[str]:
    return [e["name"] for e in SELECTION_EVENTS]


def selection_columns() -> list[str]:
    params: list[str] = []
    for e in SELECTION_EVENTS:
        params += [p for p in e["params"] if p not in params]
    return [param_column(p) for p in params] + [attribute_column(a) for a in SELECTION_ATTRIBUTES]


@dataclass(frozen=True)
class Layout:
    """How `events` over `hours` are cut into segments, and when each was stored."""

    events: int
    hours: int
    segment_rows: int = 30_000

    @property
    def segments_per_hour(self) -> int:
        return max(1, math.ceil(self.events / self.hours / self.segment_rows))

    @property
    def rows_per_segment(self) -> int:
        return max(1, self.events // (self.hours * self.segments_per_hour))

    def entry_ms(self, index: int) -> int:
        """Segment `index` (hour-major): spread evenly over its hour, with a deterministic jitter."""
        hour, j = divmod(index, self.segments_per_hour)
        step_ms = 3_600_000 / self.segments_per_hour
        jitter = np.random.default_rng([SEED, index, 1]).integers(0, max(1, int(step_ms * 0.8)))
        return int(T0.timestamp() * 1000) + hour * 3_600_000 + int(j * step_ms) + int(jitter)


def _strings(data: np.ndarray, width: int) -> pa.Array:
    """An (n, width) uint8 array of ASCII → a string array, no per-row Python."""
    n = data.shape[0]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    )


HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    out = np.empty((n, 32), dtype=np.uint8)
    out[:, 0::2] = HEX[raw >> 4]
    out[:, 1::2] = HEX[raw & 15]
    return _strings(out, 32)


def _num(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _prefixed(prefix: str, values: np.ndarray, width: int = 0, suffix: str = "") -> pa.Array:
    text = _num(values)
    if width:
        text = pc.utf8_lpad(text, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, text, suffix, "")


def _pick(choices: list[str | None], index: np.ndarray) -> pa.Array:
    return pa.array(choices, pa.string()).take(pa.array(index))


def segment_table(index: int, rows: int, entry_ms: int) -> pa.Table:
    """One segment's rows, sorted by (event_name, event_id), every column a string (the store's segment schema)."""
    rng = np.random.default_rng([SEED, index, 0])
    n = rows
    event_ids = _hex_ids(rng, n)
    name_idx = rng.choice(len(EVENT_NAMES), size=n, p=EVENT_WEIGHTS)
    names = _pick(EVENT_NAMES, name_idx)
    users = rng.integers(0, USERS, size=n)
    user_ids = _prefixed("u", users, width=7)
    ts_ms = entry_ms - rng.integers(0, 600_000, size=n)
    ts_ms[rng.random(n) < 0.001] -= 3 * 86_400_000  # a few events sent days late
    timestamps = pc.strftime(pa.array(ts_ms, pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")

    cents = rng.integers(50, 500_000, size=n)
    values = {
        "price": pc.binary_join_element_wise(
            _num(cents // 100), pc.utf8_lpad(_num(cents % 100), width=2, padding="0"), "."
        ),
        "currency": _pick(["EUR", "USD", "GBP", "TRY", "JPY"], rng.integers(0, 5, size=n)),
        "quantity": _num(rng.integers(1, 12, size=n)),
        "sku": _prefixed("SKU-", rng.integers(0, 50_000, size=n), width=6),
        "is_gift": _pick(["true", "false"], rng.integers(0, 2, size=n)),
        "tags": _pick(
            ['["sale"]', '["new","summer"]', '{"campaign":"bf","step":2}', "[]", '["a,b","say \\"hi\\""]'],
            rng.integers(0, 5, size=n),
        ),
        "url": _prefixed("https://shop.example.com/p/", rng.integers(0, 100_000, size=n), suffix='?ref=mail,top&q="x"'),
        "rating": _num(rng.integers(1, 6, size=n)),
    }
    columns: dict[str, pa.Array] = {
        "event_id": event_ids,
        "user_id": user_ids,
        "event_name": names,
        "timestamp": timestamps,
    }
    null = pa.scalar(None, pa.string())
    for key in PARAM_KEYS:
        has = np.isin(name_idx, [i for i, name in enumerate(EVENT_NAMES) if key in PARAMS_OF[name]])
        columns[param_column(key)] = pc.if_else(pa.array(has), values[key], null)
    known = (users % 10) != 0  # every tenth user has no profile attributes (anonymous)
    attrs = {
        "email": _prefixed("user", users, suffix="@example.com"),
        "country": _pick(["TR", "DE", "US", "GB", "FR", "NL"], users % 6),
        "plan": _pick(["free", "pro", "enterprise"], users % 3),
        "age": _num(18 + users % 60),
    }
    for key in ATTRIBUTE_KEYS:
        columns[attribute_column(key)] = pc.if_else(pa.array(known), attrs[key], null)
    table = pa.table(columns)
    return table.take(pc.sort_indices(table, sort_keys=[("event_name", "ascending"), ("event_id", "ascending")]))


def write_segment(container: ContainerClient, account: str, entry_ms: int, table: pa.Table, timeout: int) -> SegmentRef:
    """Store an already-unique table of events as one committed segment stamped `entry_ms`.

    Bypasses the dedup index and the segment intents, which the export never reads; the table must be
    sorted by (event_name, event_id), as the store writes it, and use the segment column names (event_id, user_id, event_name, timestamp, p:*, a:*).
    """
    check_account(account)
    segment_id = uuid.uuid4().hex
    path = segment_path(account, entry_ms, segment_id)
    container.upload_blob(path, encode_table(table), overwrite=False, timeout=timeout)
    return SegmentRef(entry_ms, segment_id, path)


def load(storage: Storage, account: str, layout: Layout, hours: range, threads: int = 4) -> dict:
    """Write every segment of `hours` through `write_segment`, each with its own entry time."""
    started = time.monotonic()
    indexes = [h * layout.segments_per_hour + j for h in hours for j in range(layout.segments_per_hour)]
    container = storage.ucd_container()
    timeout = storage.settings.ucd_commit_timeout_seconds

    def one(index: int) -> tuple[int, int]:
        entry_ms = layout.entry_ms(index)
        table = segment_table(index, layout.rows_per_segment, entry_ms)
        write_segment(container, account, entry_ms, table, timeout)
        return table.num_rows, 1

    done = []
    with ThreadPoolExecutor(threads) as pool, Progress("loading segments", total=len(indexes)) as progress:
        for result in pool.map(one, indexes):
            done.append(result)
            progress.advance()
    return {
        "segments": len(done),
        "events": sum(r for r, _ in done),
        "seconds": round(time.monotonic() - started, 2),
    }


def window_bounds(hours: int, frequency_hours: int) -> tuple[datetime, datetime]:
    """The benchmark window: starts at half past an hour in the middle of the data, `frequency` long."""
    start = T0 + timedelta(hours=max(0, hours // 2 - 1), minutes=30)
    return start, start + timedelta(hours=frequency_hours)
