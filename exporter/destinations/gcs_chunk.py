"""One chunk of a GCS resumable upload, sent without joining its pieces: the carry (the unaligned tail of the
block before, < 256 KiB) and the aligned part of this block.

requests streams a body that iterates and has a length, with that length as its Content-Length (urllib3
hands each piece to `socket.sendall`), and sends a single memoryview as it is: the block's bytes go from
the encoder's buffer to the socket with no copy in between. Only the carry is copied (into bytes: it
outlives the block, whose buffer the encoder reuses once it is staged).
"""

from __future__ import annotations

from collections.abc import Iterator


class Chunk:
    """A chunk's bytes as pieces sent one after another (requests takes it as a streamed body with a length).

    Every view it or a piece of it made is released by `release`, so that the block's buffer (a bytearray
    the encoder writes into again) is never left with an export that would forbid resizing it.
    """

    def __init__(self, pieces: tuple[memoryview, ...], views: list[memoryview]):
        self._pieces = pieces
        self._length = sum(len(p) for p in pieces)
        self._views = views  # shared with every chunk cut from this one

    @classmethod
    def of(cls, *parts: bytes | bytearray | memoryview) -> Chunk:
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        return cls(tuple(views), views)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[memoryview]:
        return iter(self._pieces)

    def cut(self, start: int, end: int) -> Chunk:
        """Bytes [start, end) of the chunk (views of the same pieces, no copy)."""
        pieces: list[memoryview] = []
        at = 0
        for piece in self._pieces:
            lo, hi = max(start - at, 0), min(end - at, len(piece))
            if lo < hi:
                view = piece[lo:hi]
                self._views.append(view)
                pieces.append(view)
            at += len(piece)
        return Chunk(tuple(pieces), self._views)

    def tail(self, start: int) -> bytes:
        """Bytes from `start` on, copied (the carry: it outlives the block's buffer)."""
        return b"".join(self.cut(start, self._length))

    def body(self) -> bytes | memoryview | Chunk:
        """What requests sends: b"" when empty (an empty stream would be sent chunked), one piece as it is."""
        if not self._pieces:
            return b""
        return self._pieces[0] if len(self._pieces) == 1 else self

    def release(self) -> None:
        """Release every view made of the pieces (the chunk is not sent again)."""
        for view in reversed(self._views):
            view.release()
        self._views.clear()
