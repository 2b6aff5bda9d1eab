"""Segment formats: new segments are Arrow IPC files (version 2); segments stored before as Parquet
(version 1) stay readable, by window reads and by the dedup of a resend, side by side with new ones."""

from __future__ import annotations

import io
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.ucd import ingest as ucd_ingest
from exporter.ucd import parse_upsert
from exporter.ucd.segments import segment_batches
from tests.ucd_helpers import T0, WIDE, ev, rows, upsert


def blob(ctx, path: str) -> bytes:
    return ctx.ucd.container.download_blob(path).readall()


def as_version_1(ctx, path: str, *, rename: bool = False) -> str:
    """Rewrite a stored segment as the Parquet file the store wrote before version 2 (same rows).

    With `rename`, under the `.parquet` name version 1 gave it (a listing finds it there); without,
    under its own name (an intent records the whole path: the format is told by the first bytes).
    """
    table = pa.ipc.open_file(pa.py_buffer(blob(ctx, path))).read_all()
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=16_384, compression="zstd")
    target = path.removesuffix(".arrow") + ".parquet" if rename else path
    ctx.ucd.container.upload_blob(target, sink.getvalue(), overwrite=True)
    if rename:
        ctx.ucd.container.delete_blob(path)
    return target


def test_a_new_segment_is_an_arrow_ipc_file_sorted_by_event_id(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "attributes": {"plan": "pro"}, "events": [ev(n=k) for k in range(5)]}])
    [segment] = ctx.ucd.segments("acme", *WIDE)
    data = blob(ctx, segment.path)
    assert data[:6] == b"ARROW1"
    table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    assert table.column_names == ["event_id", "user_id", "event_name", "timestamp", "p:n", "a:plan"]
    assert table.column("event_id").to_pylist() == sorted(table.column("event_id").to_pylist())


def test_old_parquet_segments_are_read_with_new_ones_in_entry_time_order(ctx, clock):
    clock.set(T0 + timedelta(minutes=1))
    upsert(ctx, [{"user_id": "old", "attributes": {"plan": "free"}, "events": [ev(n=k) for k in range(4)]}])
    [old] = ctx.ucd.segments("acme", *WIDE)
    old_path = as_version_1(ctx, old.path, rename=True)
    clock.set(T0 + timedelta(minutes=2))
    upsert(ctx, [{"user_id": "new", "events": [ev(n=k, extra="x") for k in range(3)] + [ev("view")]}])
    assert old_path.endswith(".parquet") and blob(ctx, old_path)[:4] == b"PAR1"
    assert [s.path.rsplit(".", 1)[1] for s in ctx.ucd.segments("acme", *WIDE)] == ["parquet", "arrow"]

    columns = ["p:n", "p:extra", "a:plan", "p:missing"]
    got = rows(ctx, columns=columns)
    assert [r["user_id"] for r in got] == ["old"] * 4 + ["new"] * 4
    assert {(r["user_id"], r["a:plan"], r["p:extra"], r["p:missing"]) for r in got} == {
        ("old", "free", None, None),
        ("new", None, "x", None),
        ("new", None, None, None),
    }
    assert rows(ctx, columns=columns, batch_rows=3, prefetch=1) == got  # the same whatever the batching
    purchases = rows(ctx, event_names=["purchase"], columns=columns)
    assert purchases == [r for r in got if r["event_name"] == "purchase"] and len(purchases) == 7


@pytest.mark.parametrize("version", [1, 2])
def test_a_resend_recognises_its_duplicates_from_the_owner_segment_in_either_format(ctx, clock, monkeypatch, version):
    body = {"users": [{"user_id": "u1", "events": [ev(n=k) for k in range(6)]}]}
    ctx.ucd.upsert(parse_upsert("acme", body))
    [segment] = ctx.ucd.segments("acme", *WIDE)
    if version == 1:
        as_version_1(ctx, segment.path)
    read = []
    real = ucd_ingest.segment_column
    monkeypatch.setattr(ucd_ingest, "segment_column", lambda data, column: read.append(column) or real(data, column))

    again = ctx.ucd.upsert(parse_upsert("acme", body))

    assert (again.stored_events, again.duplicate_events) == (0, 6)
    assert read == ["event_id"], "the duplicates were known from the owner segment's event ids"


def test_a_read_decodes_only_the_columns_it_asks_for(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "attributes": {"plan": "pro"}, "events": [ev(n=1, m=2)]}])
    [segment] = ctx.ucd.segments("acme", *WIDE)
    present, batches = segment_batches(blob(ctx, segment.path), ["event_id", "p:m", "p:absent"])
    [batch] = list(batches)
    assert present == {"event_id", "p:m"} and batch.schema.names == ["event_id", "p:m"]


def test_a_blob_in_neither_format_is_refused(ctx):
    with pytest.raises(ValueError):
        segment_batches(b"not a segment", ["event_id"])
