"""Parquet: typed columns, zstd, row groups of a fixed row count, each encoded alone and written as it fills.

A Parquet file is `PAR1`, its row groups' bytes, a footer (a Thrift FileMetaData holding every row
group's metadata: where each column chunk's pages lie in the file, its statistics), the footer's length
and `PAR1`. Each row group is written by pyarrow's ParquetWriter as a file of its own, in memory (one
group: a few MB); its bytes between the leading `PAR1` and its footer become the file's next bytes, and
its footer's RowGroup, every file offset moved to where those bytes land (`shifted_row_group`), is kept
for the file's footer. So the bytes of a row group depend on its rows alone, never on the bytes before
it, and a file can be continued after any row group by another invocation that has the row groups'
metadata so far (kept durably per block, formats/parquet_footer.py `ParquetFooter`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..csv_writer import Writable
from ..plan import ColumnPlan
from . import thrift_compact as thrift
from .types import ColumnTypes

# Large enough for readers to scan and skip by group (DuckDB's own default is 122,880 rows), small
# enough that one group of a wide selection stays tens of MB in memory. A fixed row count makes the
# groups, and so the bytes, a function of the rows alone, not of how the UCD happened to batch them.
ROW_GROUP_ROWS = 65_536
COMPRESSION = "zstd"
MAGIC = b"PAR1"

# Field ids of parquet.thrift (apache/parquet-format): those the footer's assembly reads or moves.
FILE_NUM_ROWS, FILE_ROW_GROUPS = 3, 4  # FileMetaData
GROUP_COLUMNS, GROUP_FILE_OFFSET, GROUP_ORDINAL = 1, 5, 7  # RowGroup
CHUNK_FILE_OFFSET, CHUNK_META, CHUNK_OFFSET_INDEX, CHUNK_COLUMN_INDEX = 2, 3, 4, 6  # ColumnChunk
# ColumnMetaData: data_page_offset, index_page_offset, dictionary_page_offset, bloom_filter_offset
META_OFFSETS = (9, 10, 11, 14)
MAX_ORDINAL = 2**15 - 1  # RowGroup.ordinal is an i16


def typed_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A projected batch (every value the CSV's text) cast to the file's types; a value that does not fit raises."""
    arrays = [
        column if column.type == field.type else pc.cast(column, field.type)
        for column, field in zip(batch.columns, schema)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def standalone_file(table: pa.Table, schema: pa.Schema) -> tuple[memoryview, thrift.Struct]:
    """`table` as a Parquet file of its own (one row group, or none): its row groups' bytes and its FileMetaData."""
    out = pa.BufferOutputStream()
    with pq.ParquetWriter(out, schema, compression=COMPRESSION) as writer:
        if table.num_rows:
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    data = memoryview(out.getvalue())
    footer_at = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    return data[len(MAGIC) : footer_at], thrift.read_struct(data[footer_at:-8])


def shifted_row_group(group: thrift.Struct, by: int, ordinal: int) -> thrift.Struct:
    """A RowGroup with every file offset in it moved `by` bytes (its ordinal, if it has one, set): in place.

    An offset of 0 is no offset (ColumnChunk.file_offset, deprecated, is written as 0): it stays 0.
    """
    _shift(group, GROUP_FILE_OFFSET, by)
    if group.get(GROUP_ORDINAL) is not None:
        if ordinal > MAX_ORDINAL:  # only encryption reads it; absent is what a writer without it writes
            group.fields = [f for f in group.fields if f.id != GROUP_ORDINAL]
        else:
            group.put(GROUP_ORDINAL, thrift.I16, ordinal)
    for chunk in group.structs(GROUP_COLUMNS):
        for field_id in (CHUNK_FILE_OFFSET, CHUNK_OFFSET_INDEX, CHUNK_COLUMN_INDEX):
            _shift(chunk, field_id, by)
        meta = chunk.struct(CHUNK_META)
        for field_id in META_OFFSETS if meta is not None else ():
            _shift(meta, field_id, by)  # type: ignore[arg-type]
    return group


def _shift(struct: thrift.Struct, field_id: int, by: int) -> None:
    value = struct.get(field_id)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        struct.put(field_id, thrift.I64, value + by)


def footer(schema: pa.Schema, rows: int, groups: Sequence[bytes], count: int) -> bytes:
    """The file's end: a FileMetaData of `rows` rows and `count` row groups, its length, `PAR1`.

    `groups`: the RowGroups' bytes in order, in runs of any number of them (a block's, say).
    The rest of it (the schema, the Arrow schema in key_value_metadata, created_by, column orders) is
    what pyarrow writes for a file of no rows of this schema.
    """
    _, meta = standalone_file(schema.empty_table(), schema)
    meta.put(FILE_NUM_ROWS, thrift.I64, rows)
    meta.put(FILE_ROW_GROUPS, thrift.LIST, thrift.List(thrift.STRUCT, [thrift.Encoded(g) for g in groups], size=count))
    encoded = thrift.write_struct(meta)
    return bytes(encoded) + len(encoded).to_bytes(4, "little") + MAGIC


class ParquetRows:
    """Writes projected batches as row groups of ROW_GROUP_ROWS rows; the footer only at `finish`.

    The caller hands on no batch beyond a group's end (`room`), so a group ends exactly there.
    `offset`: where the next byte lands in the file; `groups`: how many row groups are before it.
    With `header` (the file's start), the file's leading `PAR1` is written at once.
    """

    def __init__(
        self, plan: ColumnPlan, types: ColumnTypes, sink: Writable, header: bool, offset: int = 0, groups: int = 0
    ):
        self.schema = types.arrow_schema()
        self._sink = sink
        self._open: list[pa.RecordBatch] = []
        self._filled = 0
        self.offset = offset
        self.groups = groups
        self._ended: list[tuple[int, bytes]] = []  # (where it ends in the file, its RowGroup), not yet taken
        if header:
            self._write(MAGIC)

    def room(self) -> int:
        """Rows until the open row group is full."""
        return ROW_GROUP_ROWS - self._filled

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows > self.room():
            raise ValueError("a batch must not run past a row group's end")
        self._open.append(typed_batch(batch, self.schema))
        self._filled += batch.num_rows
        if self._filled == ROW_GROUP_ROWS:
            self.end_group()

    def end_group(self) -> None:
        """Write the open row group (if it has a row): its bytes now, its metadata into `ended`."""
        if not self._filled:
            return
        table = pa.Table.from_batches(self._open, schema=self.schema)
        self._open, self._filled = [], 0
        data, meta = standalone_file(table, self.schema)
        (group,) = meta.structs(FILE_ROW_GROUPS)
        at = self.offset
        self._write(data)
        self._ended.append(
            (self.offset, bytes(thrift.write_struct(shifted_row_group(group, at - len(MAGIC), self.groups))))
        )
        self.groups += 1

    def take_ended(self, through: int) -> list[bytes]:
        """The RowGroups not taken yet that end at or before file offset `through` (a block's end), in order."""
        count = sum(1 for end, _ in self._ended if end <= through)
        taken, self._ended = self._ended[:count], self._ended[count:]
        return [group for _, group in taken]

    def finish(self, rows: int, taken: Callable[[], Sequence[bytes]]) -> None:
        """The last row group, then the footer: `taken()` gives the RowGroups taken so far, in order (in runs).

        Called after the last group is written: writing it may hand on a block cut before, whose groups
        are taken then."""
        self.end_group()
        self._write(footer(self.schema, rows, [*taken(), *(group for _, group in self._ended)], self.groups))

    def close(self) -> None:
        pass  # nothing held but the open group's batches: a stop drops them with the writer (they are read again)

    def _write(self, data: bytes | memoryview) -> None:
        self._sink.write(data)
        self.offset += len(data)
