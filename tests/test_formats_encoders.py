"""The encoders alone (no servers): each streams (bytes reach the sink before the last batch is read),
gives the same bytes however the rows were batched, and refuses a value its type cannot hold; gzip is
deterministic (mtime 0, no file name); JSON strings escape every character JSON requires; the types
come from the catalog's kinds, joined over the events that select a parameter."""

from __future__ import annotations

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.export.csv_writer import BlockSink, write_csv
from exporter.export.formats import FORMAT_NAMES, file_format, fix_types
from exporter.export.formats import parquet as parquet_format
from exporter.export.formats.compress import GzipSink
from exporter.export.formats.types import column_types, numeric_params
from exporter.export.plan import EventSelection, Selection, column_plan
from exporter.ucd.segments import param_column
from exporter.ucd.values import join_kinds, value_kind

EVENTS = (EventSelection("purchase", ("price", "note")), EventSelection("view", ("price",)))
PLAN = column_plan(EVENTS, ("email",))
TYPES = column_types(PLAN, {"price": "integer"})
AWKWARD = ['"', "\\", "\x7f", "\u2028", "😀", ""] + [chr(c) for c in range(0x20)]


def segment_batch(start: int, rows: int) -> pa.RecordBatch:
    """A UCD batch (segment column names, every value text) of `rows` events numbered from `start`."""
    ids = range(start, start + rows)
    return pa.record_batch(
        {
            "event_id": [f"{i:032x}" for i in ids],
            "user_id": [f"u{i % 7}" for i in ids],
            "event_name": ["purchase" if i % 3 else "view" for i in ids],
            "timestamp": [f"2026-11-28T10:{i % 60:02d}:00.{i % 1000:03d}Z" for i in ids],
            param_column("price"): [None if i % 5 == 0 else str(i * 1000) for i in ids],
            param_column("note"): [AWKWARD[i % len(AWKWARD)] * (1 + i % 3) for i in ids],
            "a:email": [f"u{i}@example.com" for i in ids],
        }
    )


class Blocks:
    """Collects a BlockSink's blocks, noting how many batches had been read when each arrived."""

    def __init__(self):
        self.blocks: list[bytes] = []
        self.read_when_emitted: list[int] = []
        self.batches_read = 0

    def emit(self, block) -> None:
        self.blocks.append(bytes(block))
        self.read_when_emitted.append(self.batches_read)

    def batches(self, sizes):
        start = 0
        for size in sizes:
            self.batches_read += 1
            yield segment_batch(start, size)
            start += size


def encode(name: str, sizes, block_bytes: int = 1 << 16) -> tuple[bytes, Blocks, int]:
    blocks = Blocks()
    sink = BlockSink(blocks.emit, block_bytes)
    rows = file_format(name).encode(blocks.batches(sizes), PLAN, TYPES, sink)
    data = b"".join(blocks.blocks)
    assert sink.bytes_written == len(data)
    return data, blocks, rows


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_encoder_streams_and_gives_the_same_bytes_however_the_rows_were_batched(name, monkeypatch):
    monkeypatch.setattr(parquet_format, "ROW_GROUP_ROWS", 5_000)
    data, blocks, rows = encode(name, [3_000] * 20)
    assert rows == 60_000
    assert len(blocks.blocks) > 2 and blocks.read_when_emitted[0] < 20, "bytes left before the last batch was read"
    again, _, _ = encode(name, [7, 25_000, 1, 4_992, 30_000])
    assert again == data, "the bytes depend on the rows, not on their batches"


def test_parquet_row_groups_have_a_fixed_row_count(monkeypatch):
    monkeypatch.setattr(parquet_format, "ROW_GROUP_ROWS", 4_000)
    data, _, _ = encode("parquet", [1_500] * 7)
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [4_000, 4_000, 2_500]


def test_csv_gz_is_the_csv_gzipped_with_mtime_0_and_no_file_name():
    csv_data, _, _ = encode("csv", [100, 50])
    data, _, _ = encode("csv.gz", [100, 50])
    assert gzip.decompress(data) == csv_data
    assert data[:4] == b"\x1f\x8b\x08\x00", "deflate, no flags: no file name, no comment"
    assert data[4:8] == b"\x00\x00\x00\x00", "mtime 0"


def test_gzip_sink_streams_through_zlib():
    out = io.BytesIO()

    class Inner:
        closed = False

        def write(self, data):
            return out.write(data)

        def flush(self):
            pass

        def finish(self):
            out.write(b"")

    sink = GzipSink(Inner())
    chunk = bytes(range(256)) * 4096
    for _ in range(64):  # 64 MiB in, far more than zlib keeps
        sink.write(chunk)
    sink.finish()
    assert gzip.decompress(out.getvalue()) == chunk * 64


def test_jsonl_escapes_every_character_json_requires_and_keeps_the_csv_fields():
    data, _, rows = encode("jsonl.gz", [len(AWKWARD) * 3])
    lines = gzip.decompress(data).decode().split("\n")
    assert lines[-1] == "" and len(lines) == rows + 1, "one object per line, each line ended"
    objects = [json.loads(line) for line in lines[:-1]]
    batch = PLAN.project(segment_batch(0, rows)).to_pylist()
    expected = [{**row, "price": None if row["price"] is None else int(row["price"])} for row in batch]
    assert objects == expected


@pytest.mark.parametrize("name", ["parquet", "jsonl.gz"])
def test_a_value_its_type_cannot_hold_raises_instead_of_writing_a_wrong_file(name):
    bad = segment_batch(1, 3).to_pydict()
    bad[param_column("price")] = ["12", "not a number", "3"]
    sink = BlockSink(lambda block: None)
    with pytest.raises(pa.ArrowInvalid):
        file_format(name).encode([pa.record_batch(bad)], PLAN, TYPES, sink)


def test_empty_windows_are_valid_files_in_every_format():
    header = ",".join(f'"{h}"' for h in PLAN.header).encode() + b"\r\n"
    assert encode("csv", [])[0] == header
    assert gzip.decompress(encode("csv.gz", [])[0]) == header
    assert gzip.decompress(encode("jsonl.gz", [])[0]) == b""
    table = pq.read_table(io.BytesIO(encode("parquet", [])[0]))
    assert table.num_rows == 0 and table.schema == TYPES.arrow_schema()


def test_csv_bytes_are_the_writer_s_own():
    blocks = Blocks()
    write_csv(blocks.batches([10]), PLAN, BlockSink(blocks.emit))
    assert b"".join(blocks.blocks) == encode("csv", [10])[0]


def test_value_kinds_and_their_join():
    assert [value_kind(v) for v in (1, -(2**63), 2**63, 1.5, 1.0, True, "1", {"a": 1}, [1])] == [
        "integer",
        "integer",
        "string",
        "number",
        "number",
        "string",
        "string",
        "string",
        "string",
    ]
    assert join_kinds(None, "integer") == join_kinds("integer", None) == "integer"
    assert join_kinds("integer", "number") == join_kinds("number", "integer") == "number"
    assert join_kinds("number", "string") == join_kinds("integer", "string") == "string"


def test_a_parameter_is_numeric_only_if_every_selecting_event_s_values_are():
    plan = column_plan(
        (EventSelection("a", ("x", "y", "z", "w")), EventSelection("b", ("x", "y")), EventSelection("c", ("z",))),
        ("x",),
    )
    catalog = {
        "param_types": {
            "a": {"x": "integer", "y": "integer", "z": "number", "w": "integer"},
            "b": {"x": "number", "y": "string"},
            "c": {"z": "integer"},
            "d": {"w": "string"},  # not selecting w: no say
        }
    }
    assert numeric_params(plan, catalog) == {"x": "number", "z": "number", "w": "integer"}
    types = dict(column_types(plan, numeric_params(plan, catalog)).columns)
    assert types == {
        "event_id": "string",
        "user_id": "string",
        "event_name": "string",
        "timestamp": "timestamp",
        "x": "number",
        "y": "string",
        "z": "number",
        "w": "integer",
        "attr_x": "string",
    }


def test_types_are_fixed_once_and_only_for_files_that_need_them():
    asked = []

    def catalog():
        asked.append(1)
        return {"param_types": {"purchase": {"price": "integer"}, "view": {"price": "integer"}}}

    plain = Selection(EVENTS, ("email",))
    assert fix_types(plain, catalog) is plain and not asked, "a CSV without a manifest needs no types"
    for name, manifest in (("parquet", False), ("jsonl.gz", False), ("csv", True), ("csv.gz", True)):
        fixed = fix_types(Selection(EVENTS, ("email",), name, manifest), catalog)
        assert fixed.param_types == (("price", "integer"),)
        assert fix_types(fixed, lambda: pytest.fail("fixed types are never read again")) is fixed
    assert len(asked) == 4
