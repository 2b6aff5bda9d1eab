"""Segment formats: new segments are Arrow IPC files grouped by event name (version 3); segments stored
before, Arrow IPC sorted by event id (version 2) and Parquet (version 1), stay readable, by window reads
and by the dedup of a resend, side by side with new ones."""

from __future__ import annotations

import io
import json
import random
from datetime import timedelta

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from exporter.ucd import owners as ucd_owners
from exporter.ucd import parse_upsert
from exporter.ucd.segments import (
    BATCH_ROWS,
    LAYOUT_KEY,
    NAME_BATCH_ROWS,
    batch_cuts,
    encode_table,
    segment_batches,
    wanted_slices,
)
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


def as_version_2(ctx, path: str) -> str:
    """Rewrite a stored segment as version 2 wrote it: Arrow IPC, rows sorted by event id, no layout."""
    table = pa.ipc.open_file(pa.py_buffer(blob(ctx, path))).read_all().replace_schema_metadata(None)
    table = table.sort_by([("event_id", "ascending")])
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    ctx.ucd.container.upload_blob(path, sink.getvalue().to_pybytes(), overwrite=True)
    return path


def test_a_new_segment_is_an_arrow_ipc_file_grouped_by_event_name(ctx, clock):
    events = [ev("view", n=k) for k in range(3)] + [ev("buy", n=k) for k in range(4)] + [ev("add", n=9)]
    upsert(ctx, [{"user_id": "u1", "attributes": {"plan": "pro"}, "events": events}])
    [segment] = ctx.ucd.segments("acme", *WIDE)
    data = blob(ctx, segment.path)
    assert data[:6] == b"ARROW1"
    reader = pa.ipc.open_file(pa.py_buffer(data))
    table = reader.read_all()
    assert table.column_names == ["event_id", "user_id", "event_name", "timestamp", "p:n", "a:plan"]
    keys = list(zip(table.column("event_name").to_pylist(), table.column("event_id").to_pylist()))
    assert keys == sorted(keys), "rows sorted by (event name, event id)"
    layout = json.loads(reader.schema.metadata[LAYOUT_KEY])
    assert layout == {"runs": [["add", 1], ["buy", 4], ["view", 3]], "batches": [8]}, "rare names share a batch"


def test_a_common_event_name_has_batches_of_its_own_and_rare_names_share_one():
    rare, common = 10, NAME_BATCH_ROWS
    assert batch_cuts([rare, rare, common, rare, rare]) == [2 * rare, common, 2 * rare]
    assert batch_cuts([common + 1, rare]) == [common + 1, rare]
    assert batch_cuts([BATCH_ROWS + 5]) == [BATCH_ROWS, 5], "no batch exceeds BATCH_ROWS"
    assert batch_cuts([NAME_BATCH_ROWS - 1] * 3) == [2 * NAME_BATCH_ROWS - 2, NAME_BATCH_ROWS - 1]
    assert batch_cuts([]) == []


@pytest.mark.parametrize("seed", range(30))
def test_the_wanted_slices_are_exactly_the_rows_of_the_wanted_names(seed):
    rng = random.Random(seed)
    names = [f"e{k}" for k in range(rng.randint(1, 12))]
    runs = [[name, rng.choice([1, 7, 300, NAME_BATCH_ROWS, 3 * NAME_BATCH_ROWS, BATCH_ROWS + 11])] for name in names]
    cuts = batch_cuts([r for _n, r in runs])
    assert sum(cuts) == sum(r for _n, r in runs) and max(cuts) <= BATCH_ROWS
    wanted = set(rng.sample(names, rng.randint(0, len(names))))
    row_names = [name for name, r in runs for _ in range(r)]
    starts = [sum(cuts[:i]) for i in range(len(cuts))]
    got = [starts[b] + first + k for b, first, n in wanted_slices(runs, cuts, wanted) for k in range(n)]
    assert got == [i for i, name in enumerate(row_names) if name in wanted]
    assert all(n > 0 and first + n <= cuts[b] for b, first, n in wanted_slices(runs, cuts, wanted))


def test_a_read_never_decompresses_the_batches_of_names_it_does_not_want():
    """The batch of the unwanted name is corrupted: a read of the other names never touches it."""
    big = NAME_BATCH_ROWS
    names = ["add"] * big + ["buy"] * big + ["view"] * big
    table = pa.table(
        {
            "event_id": [f"{k:08d}" for k in range(3 * big)],
            "user_id": ["u"] * (3 * big),
            "event_name": names,
            "timestamp": ["2026-11-28T00:00:00Z"] * (3 * big),
        }
    )
    data = bytearray(encode_table(table))
    stream = pa.BufferOutputStream()  # a file is "ARROW1" + 2 bytes of padding + the stream's messages + a footer
    opened = pa.ipc.open_file(pa.py_buffer(bytes(data)))
    with ipc.new_stream(stream, opened.schema, options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_batch(opened.get_batch(0))
        buy_starts = stream.tell()
        writer.write_batch(opened.get_batch(1))
        buy_ends = stream.tell()
    # The whole message after its length prefix, header and buffers: any attempt to load the batch fails.
    data[8 + buy_starts + 8 : 8 + buy_ends] = b"\xff" * (buy_ends - buy_starts - 8)

    def read(names: set[str]) -> list[dict]:
        _present, batches = segment_batches(bytes(data), ["event_id", "event_name"], names)
        return pa.Table.from_batches(list(batches)).to_pylist()

    original = table.select(["event_id", "event_name"]).to_pylist()
    assert read({"add", "view"}) == [r for r in original if r["event_name"] != "buy"]
    with pytest.raises((pa.ArrowException, OSError)):  # Arrow answers a damaged message with an OSError
        read({"buy"})  # the damage is where the buy rows are


def test_a_read_never_decompresses_the_columns_it_does_not_ask_for():
    """The compressed buffers of one column are corrupted: a read of the other columns never touches them."""
    rows = 5_000
    table = pa.table(
        {
            "event_id": [f"{k:08d}" for k in range(rows)],
            "user_id": ["u"] * rows,
            "event_name": ["add"] * rows,
            "timestamp": ["2026-11-28T00:00:00Z"] * rows,
            "p:unread": [f"secret-{k:06d}" for k in range(rows)],
        }
    )
    data = encode_table(table)
    # A compressed IPC buffer is its codec's output for the buffer (after a length prefix): found by content.
    zstd = pa.Codec("zstd")
    for buffer in table.column("p:unread").combine_chunks().buffers()[1:]:
        frame = zstd.compress(buffer).to_pybytes()
        at = data.find(frame)
        assert at > 0, "the column's compressed buffer is in the file"
        data = data[:at] + b"\xff" * len(frame) + data[at + len(frame) :]

    present, batches = segment_batches(data, ["event_id", "event_name", "timestamp"], {"add"})
    assert pa.Table.from_batches(list(batches)).to_pylist() == table.drop_columns(["user_id", "p:unread"]).to_pylist()
    with pytest.raises((pa.ArrowException, OSError)):
        list(segment_batches(data, ["p:unread"], {"add"})[1])  # the damage is in that column


@pytest.mark.parametrize("seed", range(12))
def test_the_event_name_made_from_the_layout_is_the_stored_one(seed):
    """Every read of a version-3 segment (names wanted or all, with or without other columns, unicode names,
    runs that share a batch or span several) gives each row the event name the file stores for it."""
    rng = random.Random(seed)
    names = sorted(rng.sample(["add", "buy", "view", "zoom", "ödeme", "登録", "x" * 40], rng.randint(1, 7)))
    runs = [(name, rng.choice([1, 3, 200, NAME_BATCH_ROWS, BATCH_ROWS + 7])) for name in names]
    event_names = [name for name, count in runs for _ in range(count)]
    table = pa.table(
        {
            "event_id": [f"{k:08d}" for k in range(len(event_names))],
            "user_id": ["u"] * len(event_names),
            "event_name": event_names,
            "timestamp": ["2026-11-28T00:00:00.000Z"] * len(event_names),
            "p:n": [str(k % 7) for k in range(len(event_names))],
        }
    )
    data = encode_table(table)
    stored = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    for wanted in (None, set(rng.sample(names, rng.randint(0, len(names))))):
        for columns in (["event_name"], ["event_id", "event_name", "p:n"], ["p:n", "event_name", "timestamp"]):
            _present, batches = segment_batches(data, columns, wanted)
            got = list(batches)
            keep = [n for n in stored.column_names if n in columns]
            expected = [r for r in stored.select(keep).to_pylist() if wanted is None or r["event_name"] in wanted]
            assert [r for batch in got for r in batch.to_pylist()] == expected
            assert all(batch.schema.names == keep for batch in got), "the columns in the file's order, as before"


def test_a_read_never_decompresses_the_event_name_column():
    """The event-name column's compressed buffers are corrupted: every read still names every row right."""
    rows = 5_000
    table = pa.table(
        {
            "event_id": [f"{k:08d}" for k in range(rows)],
            "user_id": ["u"] * rows,
            "event_name": ["add"] * 3_000 + ["buy"] * 2_000,
            "timestamp": ["2026-11-28T00:00:00Z"] * rows,
        }
    )
    data = encode_table(table)
    zstd = pa.Codec("zstd")
    for batch in pa.ipc.open_file(pa.py_buffer(data)).read_all().to_batches():
        for buffer in batch.column("event_name").buffers()[1:]:
            frame = zstd.compress(buffer).to_pybytes()
            at = data.find(frame)
            assert at > 0, "the column's compressed buffer is in the file"
            data = data[:at] + b"\xff" * len(frame) + data[at + len(frame) :]
    with pytest.raises((pa.ArrowException, OSError)):
        pa.ipc.open_file(pa.py_buffer(data)).read_all()  # the damage is real

    _present, batches = segment_batches(data, ["event_id", "event_name"], {"buy"})
    assert (
        pa.Table.from_batches(list(batches)).to_pylist() == table.select(["event_id", "event_name"]).to_pylist()[3_000:]
    )
    _present, batches = segment_batches(data, ["event_name"])
    assert pa.Table.from_batches(list(batches)).column("event_name").to_pylist() == table["event_name"].to_pylist()


def test_old_segments_of_both_versions_are_read_with_new_ones_in_entry_time_order(ctx, clock):
    clock.set(T0 + timedelta(minutes=1))
    upsert(ctx, [{"user_id": "old", "attributes": {"plan": "free"}, "events": [ev(n=k) for k in range(4)]}])
    [old] = ctx.ucd.segments("acme", *WIDE)
    old_path = as_version_1(ctx, old.path, rename=True)
    clock.set(T0 + timedelta(minutes=2))
    upsert(ctx, [{"user_id": "mid", "events": [ev("view", n=1), ev(n=2), ev("view", n=3), ev(n=4)]}])
    mid = next(s for s in ctx.ucd.segments("acme", *WIDE) if s.path != old_path)
    as_version_2(ctx, mid.path)
    clock.set(T0 + timedelta(minutes=3))
    upsert(ctx, [{"user_id": "new", "events": [ev(n=k, extra="x") for k in range(3)] + [ev("view")]}])
    assert old_path.endswith(".parquet") and blob(ctx, old_path)[:4] == b"PAR1"
    assert [s.path.rsplit(".", 1)[1] for s in ctx.ucd.segments("acme", *WIDE)] == ["parquet", "arrow", "arrow"]

    columns = ["p:n", "p:extra", "a:plan", "p:missing"]
    got = rows(ctx, columns=columns)
    assert [r["user_id"] for r in got] == ["old"] * 4 + ["mid"] * 4 + ["new"] * 4
    mid_rows = [r for r in got if r["user_id"] == "mid"]
    assert [r["event_id"] for r in mid_rows] == sorted(r["event_id"] for r in mid_rows), "version 2: by event id"
    new_rows = [(r["event_name"], r["event_id"]) for r in got if r["user_id"] == "new"]
    assert new_rows == sorted(new_rows), "version 3: by event name, then event id"
    assert {(r["user_id"], r["a:plan"], r["p:extra"], r["p:missing"]) for r in got} == {
        ("old", "free", None, None),
        ("mid", None, None, None),
        ("new", None, "x", None),
        ("new", None, None, None),
    }
    assert rows(ctx, columns=columns, batch_rows=3, prefetch=1) == got  # the same whatever the batching
    purchases = rows(ctx, event_names=["purchase"], columns=columns)
    assert purchases == [r for r in got if r["event_name"] == "purchase"] and len(purchases) == 9
    views = rows(ctx, event_names=["view"], columns=["p:n"])
    assert [(r["user_id"], r["p:n"]) for r in views] == [("mid", "1"), ("mid", "3"), ("new", None)]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_resend_recognises_its_duplicates_from_the_owner_segment_in_any_format(ctx, clock, monkeypatch, version):
    body = {"users": [{"user_id": "u1", "events": [ev(n=k) for k in range(6)]}]}
    ctx.ucd.upsert(parse_upsert("acme", body))
    [segment] = ctx.ucd.segments("acme", *WIDE)
    if version == 1:
        as_version_1(ctx, segment.path)
    if version == 2:
        as_version_2(ctx, segment.path)
    read = []
    real = ucd_owners.segment_column
    monkeypatch.setattr(ucd_owners, "segment_column", lambda data, column: read.append(column) or real(data, column))

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
