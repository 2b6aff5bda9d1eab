"""What every format shares: its name, the file name's extension, and the encoder's one signature."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

from ..csv_writer import Sink
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


@dataclass(frozen=True)
class FileFormat:
    """One format: how a window's batches become the file's bytes."""

    name: Format
    encode: Encode
    typed: bool  # its bytes depend on the columns' types (the catalog's parameter kinds)

    @property
    def extension(self) -> str:
        return self.name.value
