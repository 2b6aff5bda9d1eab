"""What every format shares: its name, the file name's extension, and how its bytes are written.

Every format is written a projected batch at a time (`rows`), so the runner can end a block where the
format allows and continue the file from there: a row format (`csv`, `csv.gz`, `jsonl.gz`) after any
row (a gzip format's after a whole gzip member), `parquet` after a whole row group (`row_groups`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import pyarrow as pa

from ..csv_writer import Writable
from ..plan import ColumnPlan
from .types import ColumnTypes


class Format(StrEnum):
    """A window file's format, as the API names it; the value is also the file name's extension."""

    CSV = "csv"
    CSV_GZ = "csv.gz"
    PARQUET = "parquet"
    JSONL_GZ = "jsonl.gz"


DEFAULT_FORMAT = Format.CSV


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
    rows: RowsOf
    content_type: str = "application/octet-stream"  # what the destination tells a reader the file is
    gzip: bool = False  # a row format's bytes gzipped, as members that end where blocks may (formats/compress.py)
    row_groups: bool = False  # Parquet: a block ends only after a whole row group (formats/parquet.py)

    @property
    def extension(self) -> str:
        return self.name.value
