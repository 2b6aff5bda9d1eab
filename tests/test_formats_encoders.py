"""The encoders alone (no servers: the runner over segments and a destination in memory): each streams
(bytes reach the destination before the last batch is read), gives the same bytes however the rows were
batched, and refuses a value its type cannot hold; gzip is deterministic (mtime 0, no file name) and
ends a member with a segment once it covers enough stored bytes; JSON strings escape every character
JSON requires; the types come from the catalog's kinds, joined over the events that select a parameter."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.export.blocks import SLICE_ROWS
from exporter.export.formats import FORMAT_NAMES, FORMATS, FileFormat, compress, fix_types
from exporter.export.formats import parquet as parquet_format
from exporter.export.formats.base import FileCuts
from exporter.export.formats.compress import GzipMembers
from exporter.export.formats.types import column_types, numeric_params
from exporter.export.plan import EventSelection, Selection, column_plan
from exporter.export.runner import export_window
from exporter.ucd.reader import ReadPosition
from exporter.ucd.segments import SegmentRef, param_column
from exporter.ucd.values import join_kinds, value_kind
from exporter.windows import Window
from tests.export_helpers import FileBytes, write_csv

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
    """A destination in memory: collects the staged blocks, noting how many batches had been read when each arrived."""

    prefix = ""

    def __init__(self):
        self.staged: dict[int, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.read_when_emitted: list[int] = []
        self.batches_read = 0

    def stage_block(self, path, index, data):
        self.staged[index] = bytes(data)
        self.read_when_emitted.append(self.batches_read)

    def commit_blocks(self, path, count):
        self.files[path] = b"".join(self.staged[i] for i in range(count))

    def abandon_blocks(self, path):
        self.staged.clear()

    @property
    def blocks(self) -> list[bytes]:
        return [self.staged[i] for i in sorted(self.staged)]


STORED_ROW_BYTES = 10  # a segment's stored size in the UCD in memory: this much a row


class Segments:
    """A UCD in memory: `layout` lists each segment's batch sizes; the events are numbered across them."""

    def __init__(self, layout, blocks: Blocks, fail=None):
        self.layout, self.blocks, self.fail = layout, blocks, fail

    def catalog(self, account):
        return {}

    def segments(self, account, start, end):
        return [
            SegmentRef(s, f"{s}", f"segment-{s}", size=STORED_ROW_BYTES * sum(sizes))
            for s, sizes in enumerate(self.layout)
        ]

    def read_from(self, account, start, end, position=None, **options):
        assert position is None, "a whole export reads from the window's start"
        first = 0
        for s, sizes in enumerate(self.layout):
            done = 0
            for size in sizes:
                self.blocks.batches_read += 1
                batch = segment_batch(first, size) if self.fail is None else self.fail
                first, done = first + size, done + size
                yield ReadPosition(f"segment-{s}", done), batch

    def read_window(self, account, start, end, **options):
        for _, batch in self.read_from(account, start, end):
            yield batch


WINDOW = Window(datetime(2026, 11, 28, 10, tzinfo=timezone.utc), datetime(2026, 11, 28, 11, tzinfo=timezone.utc))


def encode(name: str, sizes, block_bytes: int = 1 << 16, segments=None, fail=None) -> tuple[bytes, Blocks, int]:
    """The file of `name` for a window of one segment of batches of `sizes` rows (or of `segments`)."""
    blocks = Blocks()
    selection = Selection(EVENTS, ("email",), name, param_types=(("price", "integer"),))
    ucd = Segments(segments if segments is not None else [sizes], blocks, fail)
    result = export_window(ucd, "acme", "i1", selection, WINDOW, blocks, block_bytes=block_bytes)
    data = blocks.files[result.path]
    assert result.bytes == len(data)
    return data, blocks, result.rows


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_encoder_streams_and_gives_the_same_bytes_however_the_rows_were_batched(name, monkeypatch):
    monkeypatch.setattr(parquet_format, "ROW_GROUP_ROWS", 5_000)
    monkeypatch.setattr(compress, "MEMBER_BYTES", 16 * 1024)
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


def members(data: bytes) -> list[bytes]:
    """The decompressed contents of each gzip member of `data`, in order."""
    found = []
    while data:
        member = zlib.decompressobj(compress.GZIP_WBITS)
        found.append(member.decompress(data))
        assert member.eof, "every member is complete"
        data = member.unused_data
    return found


@pytest.mark.parametrize("name", ["csv.gz", "jsonl.gz"])
def test_a_gzip_member_ends_with_a_segment_once_it_covers_enough_stored_bytes_and_inside_one_after_member_bytes(
    name, monkeypatch
):
    monkeypatch.setattr(compress, "MEMBER_BYTES", 32 * 1024)
    monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", 600 * STORED_ROW_BYTES)
    plain = "csv" if name == "csv.gz" else None
    layout = [[700, 300], [5], [3], [20_000, 4_000]]
    data, _, rows = encode(name, [], block_bytes=1 << 20, segments=layout)
    texts = members(data)
    assert rows == 25_008 and b"".join(texts) == gzip.decompress(data)
    if plain:
        assert b"".join(texts) == encode(plain, [], segments=[[1000], [5], [3], [24_000]])[0]
    ends = [row_count(text, plain is not None) for text in texts]
    header = 1 if plain else 0
    assert ends[0] == 1000 + header, "the first segment covers enough stored bytes: a member (the header in it)"
    assert len(ends) > 3 and sum(ends[1:]) == 24_008, "the small segments share a member with the next one"
    assert all(n % SLICE_ROWS == 0 for n in [ends[1] - 8] + ends[2:-1]), "cut inside the last segment, once compressed"
    again, _, _ = encode(name, [], block_bytes=1 << 16, segments=[[1, 699, 300], [5], [2, 1], [7, 23_993]])
    assert again == data, "the members depend on the segments' rows, not on their batches nor on the block size"


@pytest.mark.parametrize("name", ["csv.gz", "jsonl.gz"])
def test_many_tiny_segments_share_members(name, monkeypatch):
    monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", 600 * STORED_ROW_BYTES)
    data, _, rows = encode(name, [], segments=[[20]] * 200)
    assert rows == 4_000
    assert len(members(data)) == 7, "a member per 30 segments of 20 rows (600 rows' stored bytes), not per segment"


def row_count(text: bytes, is_csv: bool) -> int:
    """Lines of JSON (which escapes every line break), or CSV records (whose values may hold line breaks)."""
    return len(list(csv.reader(io.StringIO(text.decode(), newline="")))) if is_csv else text.count(b"\n")


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

    sink = GzipMembers(Inner())
    chunk = bytes(range(256)) * 4096
    for _ in range(64):  # 64 MiB in, far more than zlib keeps
        sink.write(chunk)
    assert out.tell() > 0, "compressed bytes left before the member ended"
    sink.end_member()
    sink.end_member()  # nothing written since: no empty member
    assert gzip.decompress(out.getvalue()) == chunk * 64 and len(members(out.getvalue())) == 1


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
    with pytest.raises(pa.ArrowInvalid):
        encode(name, [3], fail=pa.record_batch(bad))


def test_empty_windows_are_valid_files_in_every_format():
    header = ",".join(f'"{h}"' for h in PLAN.header).encode() + b"\r\n"
    assert encode("csv", [])[0] == header
    assert gzip.decompress(encode("csv.gz", [])[0]) == header
    assert gzip.decompress(encode("jsonl.gz", [])[0]) == b""
    table = pq.read_table(io.BytesIO(encode("parquet", [])[0]))
    assert table.num_rows == 0 and table.schema == TYPES.arrow_schema()


def test_csv_bytes_are_the_writer_s_own():
    out = FileBytes()
    write_csv([segment_batch(0, 10)], PLAN, out)
    assert bytes(out.data) == encode("csv", [10])[0]


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


class EventIds:
    """A format's rows: each event's id on a line of its own."""

    def __init__(self, plan, types, sink, header):
        self._sink = sink

    def write(self, batch: pa.RecordBatch) -> None:
        self._sink.write("".join(f"{i}\n" for i in batch.column(0).to_pylist()).encode())

    def close(self) -> None:
        pass


class EveryThousandRows(FileCuts):
    """A format's own cuts and end: a block may end only after every 1,000 rows; the file ends in a count."""

    def mark(self, position, rows) -> bool:
        return rows % 1_000 == 0 and self.sink.mark(position, rows)

    def finish(self, position, rows) -> None:
        self.sink.write(f"rows: {rows}\n".encode())
        self.sink.finish(position, rows)


def test_a_format_is_its_module_and_one_registration(monkeypatch):
    """A format the runner has never heard of, registered alone, decides its blocks' ends and its file's end."""
    monkeypatch.setitem(FORMATS, "ids", FileFormat("ids", typed=False, rows=EventIds, cuts=EveryThousandRows))
    data, blocks, rows = encode("ids", [500] * 14, block_bytes=4 * 1024)
    assert data == "".join(f"{i:032x}\n" for i in range(7_000)).encode() + b"rows: 7000\n"
    assert rows == 7_000 and len(blocks.blocks) > 2
    assert all(block.count(b"\n") % 1_000 == 0 for block in blocks.blocks[:-1]), "blocks end where the format lets them"
