"""Window files in every format, on every destination type: each reads back as the CSV's rows, value for
value (pyarrow for Parquet, gzip + csv, gzip + json); DuckDB reads the Parquet file with no options; a
manifest follows each committed file; a replay writes the same bytes; a format change applies from
last_success_end on, and a window already begun keeps its format.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import threading
from datetime import datetime, timedelta

import duckdb
import pandas
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from exporter.clock import iso
from exporter.destinations import open_destination as real_open_destination
from exporter.export.formats import compress
from exporter.jobs import schedule
from exporter.local.host import drain
from tests.destination_helpers import gzip_members, integration_body
from tests.export_helpers import ACCOUNT, ACT, SETTLE, FlakyDestination, H, deliver_one
from tests.helpers import call

FORMATS = ("csv", "csv.gz", "parquet", "jsonl.gz")
NOTES = ["plain", 'quote " and, comma', "line\nbreak\r\n", "tab\tand \x01 ctrl \x1f", "ünïcødé ✓ 😀", "", "back\\slash"]
SELECTION = {
    "events": [
        {"name": "purchase", "params": ["price", "amount", "big", "flag", "meta", "note", "gone", "mixed"]},
        {"name": "view", "params": ["price", "mixed"]},
    ],
    "attributes": ["email", "plan"],
}
# What the catalog makes of the values below: the types the typed formats and the manifest carry.
EXPECTED_TYPES = {
    "event_id": "string",
    "user_id": "string",
    "event_name": "string",
    "timestamp": "timestamp",
    "price": "integer",  # ints in both events
    "amount": "number",  # floats (some integral)
    "big": "string",  # beyond int64: exact as text
    "flag": "string",
    "meta": "string",  # nested: JSON text
    "note": "string",
    "gone": "string",  # only ever null
    "mixed": "number",  # ints in purchase, floats in view
    "attr_email": "string",
    "attr_plan": "string",  # attributes are text
}
PARQUET_TYPES = {
    "string": pa.string(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "integer": pa.int64(),
    "number": pa.float64(),
}

_seq = iter(range(10**6))


class WorkerKilled(BaseException):
    """The worker process dies here: nothing in the app catches it."""


def upsert_rich(ctx) -> None:
    """Events whose values cover every kind: ints, floats, huge ints, booleans, nested values, awkward text, nulls."""
    k = next(_seq)
    when = iso(ACT - timedelta(days=2) + timedelta(seconds=k, milliseconds=7))
    users = [
        {
            "user_id": f"u{i}",
            "attributes": {"email": f"u{i}@example.com", "plan": i},
            "events": [
                {
                    "event_name": "purchase",
                    "timestamp": when,
                    "event_params": {
                        "price": 100 * k + i,
                        "amount": k + i / 4,
                        "big": 10**30 + i,
                        "flag": i % 2 == 0,
                        "meta": {"a": [1, "x"], "b": None},
                        "note": NOTES[(k + i) % len(NOTES)],
                        "gone": None,
                        "mixed": i,
                    },
                },
                {"event_name": "view", "timestamp": when, "event_params": {"price": i, "mixed": i + 0.5}},
                {"event_name": "ignored", "timestamp": when, "event_params": {"price": "not selected"}},
            ],
        }
        for i in range(3)
    ]
    users.append({"user_id": f"anon-{k}", "events": [{"event_name": "view", "timestamp": when}]})
    answer = call(ctx, "ucd_upsert", {"users": users}, account=ACCOUNT)
    assert answer.status == 200, answer.body


def create_one_per_format(ctx, clock, kit, **overrides) -> dict[str, str]:
    """One integration per format into the kit's destination, all activated at ACT, events stored before it."""
    clock.set(ACT - timedelta(minutes=10))
    upsert_rich(ctx)  # before activation: never exported
    clock.set(ACT)
    ids = {}
    for name in FORMATS:
        body = integration_body(kit.body(), **SELECTION, format=name, **overrides)
        created = call(ctx, "integrations_create", body, account=ACCOUNT)
        assert created.status == 201, created.body
        assert created.body["format"] == name
        ids[name] = created.body["id"]
    return ids


def populate_rich(ctx, clock, hours: range) -> None:
    for h in hours:
        for offset in (timedelta(0), timedelta(minutes=31)):
            clock.set(ACT + h * H + offset)
            upsert_rich(ctx)


def files_of(kit, integration_id: str, extension: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of an integration's window files, oldest first (manifests aside)."""
    pattern = re.compile(rf"insider/{ACCOUNT}_events_{integration_id}_(\d+)_(\d+)\.{re.escape(extension)}")
    return sorted((int(m[1]), int(m[2]), m[0]) for m in map(pattern.fullmatch, kit.names()) if m)


def csv_rows(data: bytes) -> list[dict[str, str | None]]:
    """The CSV's rows as text, null (a bare empty cell) apart from "" (a quoted one)."""
    header = next(csv.reader(io.StringIO(data.decode(), newline="")))
    table = pacsv.read_csv(
        io.BytesIO(data),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header}, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    assert table.column_names == header
    return table.to_pylist()


def typed(text: str | None, kind: str):
    """A CSV cell as the typed formats must hold it."""
    if text is None:
        return None
    return {"integer": int, "number": float, "timestamp": datetime.fromisoformat, "string": str}[kind](text)


def as_parquet_expects(rows: list[dict]) -> list[dict]:
    return [{h: typed(v, EXPECTED_TYPES[h]) for h, v in row.items()} for row in rows]


def as_jsonl_expects(rows: list[dict]) -> list[dict]:
    """Numbers as JSON numbers; everything else the CSV's text (the timestamp too)."""
    numeric = ("integer", "number")
    return [
        {h: typed(v, EXPECTED_TYPES[h]) if EXPECTED_TYPES[h] in numeric else v for h, v in row.items()} for row in rows
    ]


def read_back(name: str, data: bytes) -> list[dict]:
    """A window file's rows as each format's own reader gives them."""
    if name == "csv":
        return csv_rows(data)
    if name == "csv.gz":
        return csv_rows(gzip.decompress(data))
    if name == "parquet":
        return pq.read_table(io.BytesIO(data)).to_pylist()
    lines = gzip.decompress(data).decode().splitlines()
    return [json.loads(line) for line in lines]


class Recorder(FlakyDestination):
    """The real destination, with every staged block and commit noted (in order); with `die_after_commit`,
    the worker process dies right after the first file commits, before anything is recorded."""

    def stage_block(self, path, index, data):
        with self.state["lock"]:
            self.state["blocks"].setdefault(path, {})[index] = bytes(data)
        return self.inner.stage_block(path, index, data)  # the upload's state: what a resumed export continues

    def commit_blocks(self, path, count):
        self.inner.commit_blocks(path, count)
        with self.state["lock"]:
            self.state["commits"].append(path)
            self.state["committed"][path] = b"".join(self.state["blocks"].pop(path)[i] for i in range(count))
            if self.state["die_after_commit"]:
                self.state["die_after_commit"] = False
                raise WorkerKilled(path)


def recording(ctx, monkeypatch, die_after_commit: bool = False) -> dict:
    state = {
        "lock": threading.Lock(),
        "blocks": {},
        "commits": [],
        "committed": {},
        "die_after_commit": die_after_commit,
    }
    monkeypatch.setattr(ctx, "open_destination", lambda *a: Recorder(real_open_destination(*a), state))
    return state


def deliver(ctx, clock, hours: int) -> None:
    clock.set(ACT + hours * H + SETTLE)
    schedule(ctx)
    drain(ctx)


# ------------------------------------------------------------------ the round trip


def test_every_format_reads_back_as_the_csv_rows_value_for_value(ctx, clock, kit, monkeypatch, tmp_path):
    ids = create_one_per_format(ctx, clock, kit, manifest=True)
    populate_rich(ctx, clock, range(2))
    log = recording(ctx, monkeypatch)
    deliver(ctx, clock, 3)  # windows 0 and 1 hold rows, window 2 is empty

    csv_files = files_of(kit, ids["csv"], "csv")
    assert len(csv_files) == 3
    for name in FORMATS:
        files = files_of(kit, ids[name], name)
        assert [(s, e) for s, e, _ in files] == [(s, e) for s, e, _ in csv_files], name
        for (start, end, csv_path), (_s, _e, path) in zip(csv_files, files):
            csv_data, data = kit.read(csv_path), kit.read(path)
            rows = csv_rows(csv_data)
            assert len(rows) == (0 if start == csv_files[-1][0] else 14), "2 upserts of 7 selected events per window"
            back = read_back(name, data)
            if name == "parquet":
                assert back == as_parquet_expects(rows), f"{path} differs from the CSV"
                schema = pq.read_schema(io.BytesIO(data))
                assert {f.name: f.type for f in schema} == {h: PARQUET_TYPES[t] for h, t in EXPECTED_TYPES.items()}
                metadata = pq.ParquetFile(io.BytesIO(data)).metadata
                groups = [metadata.row_group(g) for g in range(metadata.num_row_groups)]
                assert {g.column(c).compression for g in groups for c in range(g.num_columns)} <= {"ZSTD"}
                assert len(groups) == (1 if rows else 0)
            elif name == "jsonl.gz":
                assert back == as_jsonl_expects(rows), f"{path} differs from the CSV"
                assert all(list(obj) == list(EXPECTED_TYPES) for obj in back), "the CSV row's fields, in its order"
            else:
                assert back == rows, f"{path} differs from the CSV"
            if name == "csv.gz":
                assert gzip.decompress(data) == csv_data, "gzip of exactly the CSV bytes"
                assert (data[3], data[4:8]) == (0, b"\x00\x00\x00\x00"), "no file name (no flags), mtime 0"
                if shutil.which("zcat"):
                    assert subprocess.run(["zcat"], input=data, capture_output=True, check=True).stdout == csv_data
            assert_manifest(kit, log, ids[name], name, path, data, rows, start, end)


def assert_manifest(kit, log, integration_id, name, path, data, rows, start, end) -> None:
    """The manifest beside the file: its facts, and committed after the file."""
    manifest = json.loads(kit.read(path + ".manifest.json"))
    assert manifest == {
        "file": path.rsplit("/", 1)[-1],
        "path": path,
        "account": ACCOUNT,
        "integration_id": integration_id,
        "window": {
            "start": start,
            "end": end,
            "start_iso": iso(datetime.fromtimestamp(start, ACT.tzinfo)),
            "end_iso": iso(datetime.fromtimestamp(end, ACT.tzinfo)),
        },
        "format": name,
        "rows": len(rows),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "columns": [{"name": h, "type": t} for h, t in EXPECTED_TYPES.items()],
    }
    assert log["commits"].index(path) < log["commits"].index(path + ".manifest.json"), "the file commits first"


def parquet_beside_csv(ctx, clock, kit, tmp_path) -> tuple[str, list[dict[str, str | None]]]:
    """One window delivered in every format: its Parquet file saved locally, and the CSV file's rows."""
    ids = create_one_per_format(ctx, clock, kit)
    populate_rich(ctx, clock, range(1))
    deliver(ctx, clock, 1)
    [(_s, _e, path)] = files_of(kit, ids["parquet"], "parquet")
    [(_s, _e, csv_path)] = files_of(kit, ids["csv"], "csv")
    local = tmp_path / "window.parquet"
    local.write_bytes(kit.read(path))
    return str(local), csv_rows(kit.read(csv_path))


def test_duckdb_reads_the_parquet_file_with_no_options(ctx, clock, kit, tmp_path):
    local, rows = parquet_beside_csv(ctx, clock, kit, tmp_path)
    con = duckdb.connect()
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{local}')").fetchall())
    assert (types["timestamp"], types["price"], types["amount"], types["note"]) == (
        "TIMESTAMP WITH TIME ZONE",
        "BIGINT",
        "DOUBLE",
        "VARCHAR",
    )
    got = con.execute(f"SELECT event_id, epoch_ms(timestamp), price, amount, note, meta FROM '{local}'").fetchall()
    expected = [
        (r["event_id"], int(datetime.fromisoformat(r["timestamp"]).timestamp() * 1000))
        + tuple(typed(r[h], EXPECTED_TYPES[h]) for h in ("price", "amount", "note", "meta"))
        for r in rows
    ]
    assert got == expected and len(got) == 14


def test_pandas_reads_the_parquet_file_with_no_options(ctx, clock, kit, tmp_path):
    local, rows = parquet_beside_csv(ctx, clock, kit, tmp_path)
    frame = pandas.read_parquet(local)
    assert str(frame["timestamp"].dtype).startswith("datetime64") and str(frame["timestamp"].dt.tz) == "UTC"
    # A nullable integer column comes back as float64 in plain pandas: numeric, as the catalog says.
    assert pandas.api.types.is_numeric_dtype(frame["price"]) and pandas.api.types.is_float_dtype(frame["amount"])
    assert list(frame["event_id"]) == [r["event_id"] for r in rows] and len(rows) == 14
    assert list(frame["amount"].astype(object).where(frame["amount"].notna(), None)) == [
        typed(r["amount"], EXPECTED_TYPES["amount"]) for r in rows
    ]


@pytest.mark.parametrize("name", ["csv.gz", "jsonl.gz"])
def test_pandas_and_duckdb_read_a_gzip_file_of_several_members_as_one(
    ctx, clock, azure_kit, tmp_path, monkeypatch, name
):
    monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", 1)  # every segment ends a member, however small
    ids = create_one_per_format(ctx, clock, azure_kit)
    populate_rich(ctx, clock, range(1))  # two upserts: two segments, so two gzip members
    deliver(ctx, clock, 1)
    [(_s, _e, path)] = files_of(azure_kit, ids[name], name)
    [(_s, _e, csv_path)] = files_of(azure_kit, ids["csv"], "csv")
    data, rows = azure_kit.read(path), csv_rows(azure_kit.read(csv_path))
    assert gzip_members(data) == 2 and len(rows) == 14
    local = tmp_path / f"window.{name}"
    local.write_bytes(data)
    ids_in_order = [r["event_id"] for r in rows]
    notes = [r["note"] for r in rows]
    con = duckdb.connect()
    if name == "csv.gz":
        frame = pandas.read_csv(local, dtype=str, keep_default_na=False)  # compression from the name
        assert frame.to_dict("records") == [{h: v or "" for h, v in r.items()} for r in rows]
        got = con.execute(f"SELECT event_id FROM read_csv('{local}', header = true, all_varchar = true)").fetchall()
    else:
        frame = pandas.read_json(local, lines=True, dtype=False)
        assert list(frame["event_id"]) == ids_in_order
        assert list(frame["note"].astype(object).where(frame["note"].notna(), None)) == notes
        got = con.execute(f"SELECT event_id FROM read_json('{local}', format = 'newline_delimited')").fetchall()
    assert [g[0] for g in got] == ids_in_order, "DuckDB reads every member, in order"


# ------------------------------------------------------------------ replay and format changes


def test_replay_writes_the_same_bytes_in_every_format_whatever_changed_since(ctx, clock, kit, monkeypatch):
    ids = create_one_per_format(ctx, clock, kit, manifest=True)
    populate_rich(ctx, clock, range(1))
    deliver(ctx, clock, 1)
    delivered = {name: files_of(kit, ids[name], name)[0] for name in FORMATS}
    # Since then the catalog widened `price` to a number and every integration became CSV without a manifest.
    clock.set(ACT + 2 * H)
    body = {
        "users": [
            {
                "user_id": "w",
                "events": [{"event_name": "purchase", "timestamp": iso(ACT), "event_params": {"price": 0.5}}],
            }
        ]
    }
    assert call(ctx, "ucd_upsert", body, account=ACCOUNT).status == 200
    assert ctx.ucd.catalog(ACCOUNT)["param_types"]["purchase"]["price"] == "number"
    for name in FORMATS:
        changed = call(ctx, "integrations_update", {"format": "csv", "manifest": False}, account=ACCOUNT, id=ids[name])
        assert changed.status == 200, changed.body

    log = recording(ctx, monkeypatch)
    for name, (start, _end, path) in delivered.items():
        answer = call(ctx, "integrations_replay", {"start": start}, account=ACCOUNT, id=ids[name])
        assert answer.status == 200, answer.body
        assert answer.body["file"] == path
        assert log["committed"][path] == kit.read(path), f"replay of {name} wrote other bytes"
        manifest = path + ".manifest.json"
        assert log["committed"][manifest] == kit.read(manifest), f"replay of {name} wrote another manifest"


def test_a_format_change_applies_from_last_success_end_and_a_begun_window_keeps_its_format(
    ctx, clock, kit, monkeypatch
):
    clock.set(ACT)
    created = call(ctx, "integrations_create", integration_body(kit.body(), **SELECTION), account=ACCOUNT)
    assert created.status == 201 and created.body["format"] == "csv" and created.body["manifest"] is False
    iid = created.body["id"]
    populate_rich(ctx, clock, range(4))
    deliver(ctx, clock, 1)  # window 0 as CSV

    # Window 1 begins as CSV: its file commits, then the worker dies before anything is recorded.
    clock.set(ACT + 2 * H + SETTLE)
    assert schedule(ctx).queued == 1
    log = recording(ctx, monkeypatch, die_after_commit=True)
    with pytest.raises(WorkerKilled):
        deliver_one(ctx)
    [died] = log["commits"]
    changed = call(ctx, "integrations_update", {"format": "parquet", "manifest": True}, account=ACCOUNT, id=iid)
    assert changed.status == 200 and (changed.body["format"], changed.body["manifest"]) == ("parquet", True)

    deliver(ctx, clock, 4)
    drain(ctx, retry_delay=0)
    start = int(ACT.timestamp())
    names = kit.names()
    assert files_of(kit, iid, "csv") == [
        (
            start + h * 3600,
            start + (h + 1) * 3600,
            f"insider/{ACCOUNT}_events_{iid}_{start + h * 3600}_{start + (h + 1) * 3600}.csv",
        )
        for h in (0, 1)
    ], "window 0 delivered and window 1 begun as CSV stay CSV"
    assert [(s - start) // 3600 for s, _e, _n in files_of(kit, iid, "parquet")] == [2, 3], (
        "from last_success_end on: Parquet"
    )
    assert all(n + ".manifest.json" in names for _s, _e, n in files_of(kit, iid, "parquet"))
    assert not any(n.endswith(".csv.manifest.json") for n in names), "the begun window keeps its (absent) manifest"
    assert ctx.runs.get(ACCOUNT, iid, start + 3600).file == died
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + 4 * H
