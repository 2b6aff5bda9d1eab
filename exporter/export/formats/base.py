"""What every format shares: its name, the file name's extension, and how its bytes are written.

A row format (`csv`, `csv.gz`, `jsonl.gz`) is written a projected batch at a time (`rows`), so the
runner can end a block after any row and continue the file from there; a whole-file format (`parquet`)
takes the window's batches at once (`encode`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import pyarrow as pa

from ..csv_writer import Sink, Writable
from ..plan import ColumnPlan
from .types import ColumnTypes


class Format(StrEnum):
    """A window file's format, as the API names it; the value is also the file name's extension."""

    CSV = "csv"
    CSV_GZ = "csv.gz"
    PARQUET = "parquet"
    JSONL_GZ = "jsonl.gz"


DEFAULT_FORMAT = Format.CSV


# (the window's batches, the column plan, the columns' types, the sink) → rows written; the sink is finished.
Encode = Callable[[Iterable[pa.RecordBatch], ColumnPlan, ColumnTypes, Sink], int]


class RowWriter(Protocol):
    """Writes projected batches (the plan's columns, every value the CSV's text) as the format's rows."""

    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


# (the column plan, the columns' types, where the bytes go, whether to write a header) → a RowWriter.
RowsOf = Callable[[ColumnPlan, ColumnTypes, Writable, bool], RowWriter]


@dataclass(frozen=True)
class FileFormat:
    """One format: how a window's batches become the file's bytes."""

    name: Format
    typed: bool  # its bytes depend on the columns' types (the catalog's parameter kinds)
    rows: RowsOf | None = None  # a row format: its blocks can end after any row
    gzip: bool = False  # a row format's bytes gzipped, as members that end where blocks may (formats/compress.py)
    encode: Encode | None = None  # a whole-file format: the window's batches → the file

    @property
    def extension(self) -> str:
        return self.name.value
