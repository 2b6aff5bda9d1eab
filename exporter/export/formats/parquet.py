"""Parquet: typed columns, zstd, row groups of a fixed row count, written as each group fills."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..plan import ColumnPlan
from .base import FileFormat, Format, Sink
from .types import ColumnTypes

# Large enough for readers to scan and skip by group (DuckDB's own default is 122,880 rows), small
# enough that one group of a wide selection stays tens of MB in memory. A fixed row count makes the
# groups, and so the bytes, a function of the rows alone, not of how the UCD happened to batch them.
ROW_GROUP_ROWS = 65_536
COMPRESSION = "zstd"


def typed_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A projected batch (every value the CSV's text) cast to the file's types; a value that does not fit raises."""
    arrays = [
        column if column.type == field.type else pc.cast(column, field.type)
        for column, field in zip(batch.columns, schema)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def row_groups(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    """The batches regrouped into lists of exactly `rows` rows (the last may hold fewer; none is empty)."""
    group: list[pa.RecordBatch] = []
    filled = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(batch.num_rows - offset, rows - filled)
            group.append(batch.slice(offset, take))
            filled += take
            offset += take
            if filled == rows:
                yield group
                group, filled = [], 0
    if group:
        yield group


def encode_parquet(batches: Iterable[pa.RecordBatch], plan: ColumnPlan, types: ColumnTypes, sink: Sink) -> int:
    """One row group per ROW_GROUP_ROWS rows, each written to the sink when full; the footer at the end."""
    schema = types.arrow_schema()
    written = 0
    writer = pq.ParquetWriter(sink, schema, compression=COMPRESSION)
    try:
        projected = (plan.project(batch) for batch in batches)
        for group in row_groups(projected, ROW_GROUP_ROWS):
            table = pa.Table.from_batches([typed_batch(b, schema) for b in group], schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            written += table.num_rows
    finally:
        writer.close()
    sink.finish()
    return written


PARQUET = FileFormat(Format.PARQUET, typed=True, encode=encode_parquet)
