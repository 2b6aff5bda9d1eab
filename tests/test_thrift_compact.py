"""The Thrift compact codec and the Parquet footer's assembly, alone (no I/O): real pyarrow footers
(several schemas, with and without statistics, page indexes, bloom filters) read and written back byte
for byte, unknown fields kept, and a row group's offsets shifted: exactly its file offsets, by exactly
the shift; row groups encoded alone and joined under one footer read back as one file."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.export.formats import parquet
from exporter.export.formats import thrift_compact as thrift
from exporter.export.formats.parquet import ParquetRows, shifted_row_group
from exporter.export.formats.types import ColumnTypes
from exporter.export.plan import column_plan

ROWS = 3_000


def table_of(kind: str) -> pa.Table:
    """A table of each flavour a footer can hold: flat types, nulls, nested values, a dictionary, wide."""
    ids = list(range(ROWS))
    if kind == "flat":
        return pa.table(
            {
                "s": [f"v{i % 97}" if i % 11 else None for i in ids],
                "i": pa.array(ids, pa.int64()),
                "d": pa.array([i / 7 for i in ids], pa.float64()),
                "t": pa.array(ids, pa.timestamp("ms", tz="UTC")),
                "b": [i % 3 == 0 for i in ids],
            }
        )
    if kind == "nested":
        return pa.table(
            {
                "l": [[i, i + 1] if i % 5 else None for i in ids],
                "st": [{"a": i, "b": str(i)} for i in ids],
                "m": pa.array([[("k", i)] for i in ids], pa.map_(pa.string(), pa.int64())),
            }
        )
    if kind == "dictionary":
        return pa.table({"c": pa.array([f"c{i % 4}" for i in ids]).dictionary_encode(), "n": ids})
    return pa.table({f"col{c}": [f"{c}-{i % 13}" for i in ids] for c in range(40)})  # wide: long lists


def written(table: pa.Table, **options) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", row_group_size=1_000, **options)
    return out.getvalue()


def footer_bytes(data: bytes) -> bytes:
    size = int.from_bytes(data[-8:-4], "little")
    return data[-8 - size : -8]


FLAVOURS = {
    "default": {},
    "no-stats": {"write_statistics": False},
    "page-index": {"write_page_index": True},
    "plain-v2": {"use_dictionary": False, "data_page_version": "2.0"},
}
CASES = [(kind, name) for kind in ("flat", "nested", "dictionary", "wide") for name in FLAVOURS]


@pytest.mark.parametrize(("kind", "flavour"), [*CASES, ("flat", "bloom")])
def test_a_real_footer_is_read_and_written_back_byte_for_byte(kind, flavour):
    options = FLAVOURS.get(flavour, {"bloom_filter_options": {"s": {"ndv": 100}}})
    footer = footer_bytes(written(table_of(kind), **options))
    meta = thrift.read_struct(footer)
    assert len(meta.structs(parquet.FILE_ROW_GROUPS)) == 3
    assert bytes(thrift.write_struct(meta)) == footer


def test_unknown_fields_and_every_type_are_kept():
    inner = thrift.Struct([thrift.Field(1, thrift.I32, -5), thrift.Field(300, thrift.BINARY, b"far id")])
    struct = thrift.Struct(
        [
            thrift.Field(1, thrift.TRUE, True),
            thrift.Field(2, thrift.FALSE, False),
            thrift.Field(3, thrift.BYTE, -2),
            thrift.Field(4, thrift.I16, 32_000),
            thrift.Field(5, thrift.I64, -(2**62)),
            thrift.Field(6, thrift.DOUBLE, b"\x00\x00\x00\x00\x00\x00\xf8\x7f"),
            thrift.Field(40, thrift.STRUCT, inner),  # a delta over 15: the long field header
            thrift.Field(20, thrift.LIST, thrift.List(thrift.I32, list(range(20)))),  # a backwards id
            thrift.Field(21, thrift.SET, thrift.List(thrift.BINARY, [b"a"], thrift.SET)),
            thrift.Field(22, thrift.MAP, thrift.Map(thrift.BINARY, thrift.STRUCT, [(b"k", inner)])),
            thrift.Field(23, thrift.MAP, thrift.Map(0, 0, [])),
            thrift.Field(24, thrift.LIST, thrift.List(thrift.TRUE, [1, 2, 1])),
        ]
    )
    data = bytes(thrift.write_struct(struct))
    again = thrift.read_struct(data)
    assert again == struct
    assert bytes(thrift.write_struct(again)) == data
    assert again.struct(40).get(300) == b"far id"


def int_fields(struct: thrift.Struct, path: tuple = ()) -> dict[tuple, int]:
    """Every integer in a struct, by its path of field ids and list indexes."""
    found: dict[tuple, int] = {}
    for f in struct.fields:
        here = (*path, f.id)
        if isinstance(f.value, thrift.Struct):
            found |= int_fields(f.value, here)
        elif isinstance(f.value, thrift.List):
            for i, item in enumerate(f.value.items):
                if isinstance(item, thrift.Struct):
                    found |= int_fields(item, (*here, i))
        elif isinstance(f.value, int) and not isinstance(f.value, bool):
            found[here] = f.value
    return found


# RowGroup.file_offset; per column: ColumnChunk offset_index_offset, column_index_offset; ColumnMetaData
# data_page_offset, dictionary_page_offset (index_page_offset, bloom_filter_offset where written).
MOVED = {(5,), (1, "c", 4), (1, "c", 6), (1, "c", 3, 9), (1, "c", 3, 10), (1, "c", 3, 11), (1, "c", 3, 14)}


@pytest.mark.parametrize(
    ("options", "also"),
    [
        ({}, set()),
        ({"write_page_index": True}, {(1, "c", 4), (1, "c", 6)}),  # the page indexes' offsets
        ({"bloom_filter_options": {"s": {"ndv": 100}}}, {(1, "c", 3, 14)}),  # the bloom filter's
    ],
)
def test_shifting_a_row_group_moves_exactly_its_file_offsets(options, also):
    meta = thrift.read_struct(footer_bytes(written(table_of("flat"), **options)))
    group = meta.structs(parquet.FILE_ROW_GROUPS)[1]
    before = int_fields(group)
    after = int_fields(shifted_row_group(group, 1_000_000, ordinal=7))
    changed = {path for path in before if after[path] != before[path]}
    assert changed and all(after[p] == before[p] + 1_000_000 for p in changed), "moved by exactly the shift"
    general = {(p[0],) if len(p) == 1 else (p[0], "c", *p[2:]) for p in changed}
    assert general <= MOVED, "only file offsets move (never sizes, counts or statistics)"
    assert {(5,), (1, "c", 3, 9), (1, "c", 3, 11)} | also <= general, "the group's, the pages', the dictionaries'"
    assert all(before[p] == 0 for p in before if p[-1] == parquet.CHUNK_FILE_OFFSET and len(p) == 3)


def test_row_groups_encoded_alone_read_back_as_one_file(monkeypatch):
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 1_000)
    table = (
        table_of("flat")
        .drop_columns(["b"])
        .cast(
            pa.schema(
                [
                    ("s", pa.string()),
                    ("i", pa.int64()),
                    ("d", pa.float64()),
                    ("t", pa.timestamp("ms", tz="UTC")),
                ]
            )
        )
    )
    types = ColumnTypes((("s", "string"), ("i", "integer"), ("d", "number"), ("t", "timestamp")))
    out = io.BytesIO()
    writer = ParquetRows(column_plan((), ()), types, out, header=True)
    for batch in table.to_batches(max_chunksize=1_000):
        writer.write(batch)
    writer.finish(table.num_rows, list)
    data = out.getvalue()
    assert data[:4] == data[-4:] == b"PAR1"
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.read().equals(table)
    assert [file.metadata.row_group(g).num_rows for g in range(3)] == [1_000] * 3
    assert file.read_row_group(2).equals(table.slice(2_000))
