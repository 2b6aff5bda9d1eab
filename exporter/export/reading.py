"""The window's read, begun before the export is ready to encode (`EarlyRead`): its first segments are
downloaded and decoded while the export reads where the file stands and opens it (the upload, a Parquet
file's notes, the blocks' memory), instead of after (docs/benchmarks.md, "a follow-up's fixed cost").

A read is only a read: one begun at a position the export then does not continue from (its upload
was gone, say, and the file starts again) is closed unused, and the right one begun instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Generic, TypeVar

Item = TypeVar("Item")
At = TypeVar("At")

# Threads start on demand; host.json lets an instance run up to six jobs at once, each beginning one read.
_FIRST = ThreadPoolExecutor(6, thread_name_prefix="first-read")


class EarlyRead(Generic[At, Item]):
    """A read from `at`, its first item made in the background from now on; the rest in the caller's thread."""

    def __init__(self, read: Callable[[At], Iterator[Item]], at: At):
        self.at = at
        self._items = read(at)
        self._first = _FIRST.submit(next, self._items, None)
        self._begun = False

    def __iter__(self) -> EarlyRead[At, Item]:
        return self

    def __next__(self) -> Item:
        if self._begun:
            return next(self._items)
        self._begun = True
        first = self._first.result()  # its failure is the read's, raised here as it would have been
        if first is None:
            raise StopIteration
        return first

    def close(self) -> None:
        """Stop the read (its prefetch, at once): once its first item is made, since a generator running in
        another thread cannot be closed."""
        wait([self._first])
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


def begun_at(early: EarlyRead[At, Item] | None, read: Callable[[At], Iterator[Item]], at: At) -> Iterator[Item]:
    """The read from `at`: the one begun early if it began there, else a new one (the early one closed)."""
    if early is not None and early.at == at:
        return early
    if early is not None:
        early.close()
    return read(at)
