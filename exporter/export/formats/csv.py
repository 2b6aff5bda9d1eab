"""CSV (the product page's format, byte for byte) and the same bytes gzipped."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv

from ..csv_writer import WRITE_OPTIONS, Writable
from ..plan import ColumnPlan
from .base import FileFormat, Format
from .compress import GzipMarks
from .types import ColumnTypes


class CsvRows:
    """RFC 4180 text by Arrow's CSV writer (exporter.export.csv_writer's options); the header, if asked, at once."""

    def __init__(self, plan: ColumnPlan, types: ColumnTypes, sink: Writable, header: bool):
        options = pacsv.WriteOptions(include_header=header, eol=WRITE_OPTIONS.eol)
        self._writer = pacsv.CSVWriter(sink, plan.schema, write_options=options)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


# Every value is written as its CSV text, so the types are not needed; gzip: `zcat` gives the CSV file.
CSV = FileFormat(Format.CSV, typed=False, rows=CsvRows, content_type="text/csv; charset=utf-8")
CSV_GZ = FileFormat(Format.CSV_GZ, typed=False, rows=CsvRows, cuts=GzipMarks, content_type="application/gzip")
