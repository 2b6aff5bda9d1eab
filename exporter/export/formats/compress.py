"""gzip in front of a sink: zlib streaming, so only zlib's window is held, never the file."""

from __future__ import annotations

import zlib

from .base import Sink

GZIP_LEVEL = 6  # gzip's own default: the usual balance of size and speed
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer: mtime 0, no file name, so the bytes are deterministic


class GzipSink:
    """A write-only file that gzips what it is given and writes the compressed bytes to `inner`."""

    def __init__(self, inner: Sink, level: int = GZIP_LEVEL):
        self._inner = inner
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
        self.closed = False

    def write(self, data) -> int:
        compressed = self._compressor.compress(data)
        if compressed:
            self._inner.write(compressed)
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass  # a flush would cut the deflate stream where the writer happened to flush: never deterministic

    def finish(self) -> None:
        """The rest of the stream and the trailer, then finish the inner sink."""
        self._inner.write(self._compressor.flush(zlib.Z_FINISH))
        self._inner.finish()
