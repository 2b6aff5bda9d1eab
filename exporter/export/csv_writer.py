"""The CSV writer's options (RFC 4180, CRLF), the block size, and what every encoder writes into (`Writable`)."""

from __future__ import annotations

from typing import Protocol

import pyarrow.csv as pacsv

# Strings are always quoted by Arrow's writer; nulls are bare empty cells, so null and "" stay distinct.
WRITE_OPTIONS = pacsv.WriteOptions(include_header=True, eol="\r\n")
BLOCK_BYTES = 8 * 1024 * 1024


class Writable(Protocol):
    """A write-only file: what Arrow's writers and the gzip filter write to."""

    closed: bool

    def write(self, data) -> int: ...

    def flush(self) -> None: ...
