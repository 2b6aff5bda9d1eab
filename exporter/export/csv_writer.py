"""The CSV writer's options (RFC 4180, CRLF) and the sinks every encoder writes into: fixed-size blocks, no per-row Python."""

from __future__ import annotations

from collections.abc import Callable
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


class Sink(Writable, Protocol):
    """Where an encoder writes: a write-only file (a BlockSink, or a filter such as gzip in front of one)."""

    def finish(self) -> None:
        """No more bytes: hand on what is buffered."""
        ...


class BlockSink:
    """A write-only file that hands on exactly `block_bytes` at a time (the last block may be shorter).

    Cutting at fixed offsets keeps the block list a function of the bytes alone, so a retry stages
    the same blocks under the same ids. Each byte is copied once, into the block being filled (Arrow
    reuses the buffer it writes from, so it must be copied); a full block is handed on as it is
    (a bytearray nobody writes to again) and a fresh one started.
    """

    def __init__(self, emit: Callable[[bytes], None], block_bytes: int = BLOCK_BYTES):
        self._emit = emit
        self._block_bytes = block_bytes
        self._block = bytearray(block_bytes)  # zeroed on demand: pages are touched only as they fill
        self._filled = 0
        self.bytes_written = 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        offset = 0
        while offset < size:
            take = min(size - offset, self._block_bytes - self._filled)
            self._block[self._filled : self._filled + take] = view[offset : offset + take]
            self._filled += take
            offset += take
            if self._filled == self._block_bytes:
                block, self._block, self._filled = self._block, bytearray(self._block_bytes), 0
                self._emit(block)
        self.bytes_written += size
        return size

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        block, filled = self._block, self._filled
        self._block, self._filled = bytearray(), 0
        if filled:
            del block[filled:]
            self._emit(block)
