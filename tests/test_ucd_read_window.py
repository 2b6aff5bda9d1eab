"""UCD window reads: entry-time order, only a window's own segments, event and column selection, bounded batches."""

from __future__ import annotations

import time
from datetime import timedelta

import pyarrow as pa

from exporter.ucd.segments import FIXED_COLUMNS
from tests.ucd_helpers import T0, WIDE, ev, rows, upsert


def _three_segments(ctx, clock):
    for minute, count in ((1, 5), (2, 6), (3, 4)):
        clock.set(T0 + timedelta(minutes=minute))
        upsert(
            ctx, [{"user_id": f"u{minute}", "events": [ev(ts=f"2026-11-28T08:0{k}:00Z", k=k) for k in range(count)]}]
        )


def test_read_order_is_entry_time_then_event_id(ctx, clock):
    _three_segments(ctx, clock)
    segments = ctx.ucd.segments("acme", *WIDE)
    assert [s.entry_time for s in segments] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    got = rows(ctx)
    entry_of_user = {f"u{m}": T0 + timedelta(minutes=m) for m in (1, 2, 3)}
    keys = [(entry_of_user[r["user_id"]], r["event_id"]) for r in got]
    assert len(keys) == 15 and keys == sorted(keys)
    assert [r["user_id"] for r in got] == ["u1"] * 5 + ["u2"] * 6 + ["u3"] * 4
    assert rows(ctx) == got and rows(ctx, batch_rows=2, prefetch=1) == got  # deterministic, whatever the batching


def test_a_window_reads_only_its_own_segments(ctx, clock, monkeypatch):
    entries = [
        T0 - timedelta(minutes=30),
        T0 + timedelta(minutes=10),
        T0 + timedelta(minutes=50),
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=1, minutes=20),
        T0 + timedelta(hours=3),
    ]
    for i, when in enumerate(entries):
        clock.set(when)
        upsert(ctx, [{"user_id": f"u{i}", "events": [ev(i=i)]}])
    path_of = {s.entry_time: s.path for s in ctx.ucd.segments("acme", *WIDE)}
    assert list(path_of) == entries

    downloaded = []
    real = ctx.ucd.reader._download
    monkeypatch.setattr(ctx.ucd.reader, "_download", lambda path: downloaded.append(path) or real(path))

    def window(start, end):
        downloaded.clear()
        refs = ctx.ucd.segments("acme", start, end)
        users = [r["user_id"] for r in rows(ctx, start=start, end=end)]
        assert sorted(downloaded) == sorted(r.path for r in refs)
        return [r.entry_time for r in refs], users

    assert window(T0, T0 + timedelta(hours=1)) == ([entries[1], entries[2]], ["u1", "u2"])
    assert window(T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == ([entries[3], entries[4]], ["u3", "u4"])
    assert window(T0 + timedelta(minutes=15), T0 + timedelta(minutes=55)) == ([entries[2]], ["u2"])
    assert window(T0 + timedelta(hours=2), T0 + timedelta(hours=3)) == ([], [])
    assert window(T0 - timedelta(hours=1), T0 + timedelta(hours=4)) == (entries, [f"u{i}" for i in range(6)])

    # listing is by hour prefix: a window inside one hour never lists another hour
    listed = []
    real_list = ctx.ucd.container.list_blobs
    monkeypatch.setattr(
        ctx.ucd.container, "list_blobs", lambda **kw: listed.append(kw["name_starts_with"]) or real_list(**kw)
    )
    ctx.ucd.segments("acme", T0 + timedelta(minutes=15), T0 + timedelta(minutes=55))
    assert listed == ["acme/events/2026/11/28/10/"]


def test_event_name_filter(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "events": [ev(k=1), ev("view", k=2), ev("email_open", k=3), ev(k=4)]}])
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u2", "events": [ev("view", k=5)]}])
    everything = rows(ctx)
    assert len(everything) == 5
    purchases = rows(ctx, event_names=["purchase"])
    assert sorted(r["event_name"] for r in purchases) == ["purchase", "purchase"]
    assert purchases == [r for r in everything if r["event_name"] == "purchase"]  # order kept
    assert {r["event_name"] for r in rows(ctx, event_names={"view", "email_open"})} == {"view", "email_open"}
    assert len(rows(ctx, event_names=["view", "email_open"])) == 3
    assert rows(ctx, event_names=[]) == []
    assert rows(ctx, event_names=["nope"]) == []


def test_column_selection_with_missing_columns_as_nulls(ctx, clock):
    upsert(
        ctx, [{"user_id": "u1", "attributes": {"email": "a@x"}, "events": [ev(price=9.5, currency="EUR"), ev(price=1)]}]
    )
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u2", "events": [ev("view", page="/")]}])  # a segment without price or email columns
    columns = ["p:price", "a:email", "p:missing", "event_name", "a:missing"]
    batches = list(ctx.ucd.read_window("acme", *WIDE, columns=columns))
    expected = list(FIXED_COLUMNS) + ["p:price", "a:email", "p:missing", "a:missing"]
    assert batches and all(b.schema.names == expected for b in batches)
    assert all(f.type == pa.string() for b in batches for f in b.schema)
    got = pa.Table.from_batches(batches).to_pylist()
    assert sorted((r["user_id"], r["p:price"], r["a:email"], r["p:missing"], r["a:missing"]) for r in got) == [
        ("u1", "1", "a@x", None, None),
        ("u1", "9.5", "a@x", None, None),
        ("u2", None, None, None, None),
    ]
    assert all(b.schema.names == list(FIXED_COLUMNS) for b in ctx.ucd.read_window("acme", *WIDE))


def test_batches_are_bounded_by_batch_rows(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "events": [ev(ts=f"2026-11-28T08:{m:02d}:00Z") for m in range(25)]}])
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u2", "events": [ev(ts=f"2026-11-28T08:{m:02d}:00Z") for m in range(7)]}])
    batches = list(ctx.ucd.read_window("acme", *WIDE, batch_rows=10))
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == 32 and max(sizes) <= 10 and len(batches) >= 4, sizes
    filtered = list(ctx.ucd.read_window("acme", *WIDE, batch_rows=4, event_names=["purchase"]))
    assert sum(b.num_rows for b in filtered) == 32 and max(b.num_rows for b in filtered) <= 4


def test_a_window_is_streamed_a_few_segments_ahead(ctx, clock, monkeypatch):
    """Nothing is read until the first batch is asked for; then only `prefetch` segments ahead, never the window."""
    for minute in range(8):
        clock.set(T0 + timedelta(minutes=minute))
        upsert(ctx, [{"user_id": f"u{minute}", "events": [ev(k=minute)]}])
    downloaded = []
    real = ctx.ucd.reader._download
    monkeypatch.setattr(ctx.ucd.reader, "_download", lambda path: downloaded.append(path) or real(path))

    batches = ctx.ucd.read_window("acme", *WIDE, prefetch=2)
    assert downloaded == []
    assert next(batches).column("user_id").to_pylist() == ["u0"]
    time.sleep(0.5)  # time enough for an eager reader to fetch the rest
    assert len(downloaded) <= 3, "the segment being consumed and two ahead"
    assert [b.column("user_id")[0].as_py() for b in batches] == [f"u{m}" for m in range(1, 8)]
    assert len(downloaded) == 8
