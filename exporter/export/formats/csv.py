"""CSV (the product page's format, byte for byte) and the same bytes gzipped."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from ..csv_writer import write_csv
from ..plan import ColumnPlan
from .base import FileFormat, Format, Sink
from .compress import GzipSink
from .types import ColumnTypes


def encode_csv(batches: Iterable[pa.RecordBatch], plan: ColumnPlan, types: ColumnTypes, sink: Sink) -> int:
    """RFC 4180 text (exporter.export.csv_writer); every value as its CSV text, so the types are not needed."""
    return write_csv(batches, plan, sink)


def encode_csv_gz(batches: Iterable[pa.RecordBatch], plan: ColumnPlan, types: ColumnTypes, sink: Sink) -> int:
    """Exactly the CSV bytes, gzipped as they stream: `zcat` gives the CSV file."""
    return write_csv(batches, plan, GzipSink(sink))


CSV = FileFormat(Format.CSV, encode_csv, typed=False)
CSV_GZ = FileFormat(Format.CSV_GZ, encode_csv_gz, typed=False)
