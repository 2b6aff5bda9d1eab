"""UCD window reads: the segments whose entry time falls in a window, streamed as Arrow record batches.

Only the hours a window covers are listed, and only the segments whose name says they are in it are
downloaded; a few segments are decoded ahead of the consumer, never the whole window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice, takewhile

import pyarrow as pa
from azure.storage.blob import ContainerClient

from .segments import (
    FIXED_COLUMNS,
    SegmentRef,
    hour_prefix,
    hours_covering,
    parse_segment_name,
    segment_batches,
    to_ms,
)

READ_PREFETCH = 3  # segment downloads at once (what a plain download of the window's segments uses too)
READ_AHEAD = 6  # segments held ahead of the one being consumed, downloaded or decoded: the memory bound
DECODERS = 2  # segments decoded at once (in read order; Arrow decodes without the GIL)
DOWNLOAD_CONCURRENCY = 2  # connections per segment download
LIST_CONCURRENCY = 4  # hour prefixes listed at once


class WindowReader:
    """Reads the committed segments of the UCD's blob container by entry-time window."""

    def __init__(self, container: ContainerClient):
        self.container = container

    def segments(self, account: str, start: datetime, end: datetime) -> list[SegmentRef]:
        """The committed segments whose entry time is in [start, end), in read order."""
        return list(self._iter_segments(account, start, end))

    def _iter_segments(self, account: str, start: datetime, end: datetime) -> Iterator[SegmentRef]:
        """`segments`, hour by hour, so reading can start before the last hour is listed.

        Hours are disjoint and ascending, so sorting within each hour gives the same order as one sort.
        """
        start_ms, end_ms = to_ms(start), to_ms(end)

        def list_hour(hour: datetime) -> list[SegmentRef]:
            refs = []
            for blob in self.container.list_blobs(name_starts_with=hour_prefix(account, hour)):
                ref = parse_segment_name(blob.name)
                if ref is not None and start_ms <= ref.entry_ms < end_ms:
                    refs.append(replace(ref, size=blob.size or 0))
            return sorted(refs)

        hours = list(hours_covering(start, end))
        if len(hours) == 1:
            yield from list_hour(hours[0])
            return
        # The hours are listed side by side (a listing is a round trip or more each), consumed in order.
        with ThreadPoolExecutor(min(LIST_CONCURRENCY, len(hours))) as pool:
            for refs in pool.map(list_hour, hours):
                yield from refs

    def read_window(
        self,
        account: str,
        start: datetime,
        end: datetime,
        *,
        event_names: Iterable[str] | None = None,
        columns: Iterable[str] = (),
        batch_rows: int = 65_536,
        prefetch: int = READ_AHEAD,
        segments: Iterable[SegmentRef] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Stored events with entry time in [start, end) as Arrow batches, in entry-time order.

        `columns` are segment columns beyond the fixed four (`p:<key>`, `a:<key>`); every batch has
        exactly the fixed columns plus these, missing ones null. Memory: a few segments, never the window.
        `segments`: as in `read_from`.
        """
        positioned = self.read_from(
            account,
            start,
            end,
            segments=segments,
            event_names=event_names,
            columns=columns,
            batch_rows=batch_rows,
            prefetch=prefetch,
        )
        return (batch for _, batch in positioned)

    def read_from(
        self,
        account: str,
        start: datetime,
        end: datetime,
        position: ReadPosition | None = None,
        *,
        until: str | None = None,
        segments: Iterable[SegmentRef] | None = None,
        event_names: Iterable[str] | None = None,
        columns: Iterable[str] = (),
        batch_rows: int = 65_536,
        prefetch: int = READ_AHEAD,
    ) -> Iterator[tuple[ReadPosition, pa.RecordBatch]]:
        """`read_window` from `position` on, each batch with the position just after it.

        A position is (segment path, rows of that segment already read, after the event-name filter): the
        window's segment list is fixed once it is due (entry times land before `end + settle`), so an
        export can stop after any batch and another invocation continue there without re-reading
        the segments before it. `until` (a segment path) ends the read before that segment: one part
        of a window split across workers. `segments`: the window's segments (`segments()`), if the caller
        listed them already (a due window's list is fixed), so they are not listed again.
        """
        names = list(FIXED_COLUMNS) + [c for c in columns if c not in FIXED_COLUMNS]
        schema = pa.schema([(n, pa.string()) for n in names])
        wanted = frozenset(event_names) if event_names is not None else None

        refs = iter(segments) if segments is not None else self._iter_segments(account, start, end)
        first = parse_segment_name(position.segment) if position is not None else None
        if first is not None:
            refs = (ref for ref in refs if ref >= first)  # segments sort in read order
        last = parse_segment_name(until) if until is not None else None
        if last is not None:
            refs = takewhile(lambda ref: ref < last, refs)
        # Besides the segment being consumed, at most `prefetch` segments are held, downloaded or decoded.
        # Downloads run `READ_PREFETCH` at a time (as a plain download of the segments would) and never wait
        # for a decode; `DECODERS` workers decode the downloaded segments, handed on in read order (Arrow
        # releases the GIL, so decoding overlaps the downloads and the caller's CSV encoding).
        ahead = max(1, prefetch)
        with ThreadPoolExecutor(min(ahead, READ_PREFETCH)) as downloads, ThreadPoolExecutor(DECODERS) as decoder:

            def fetch(ref: SegmentRef) -> tuple[SegmentRef, Future[list[pa.RecordBatch]]]:
                blob = downloads.submit(self._download, ref.path)
                return ref, decoder.submit(lambda: list(_conform(blob.result(), schema, wanted, batch_rows)))

            pending = deque(fetch(ref) for ref in islice(refs, ahead))
            while pending:
                ref, loading = pending.popleft()
                batches = loading.result()
                nxt = next(refs, None)
                if nxt is not None:
                    pending.append(fetch(nxt))
                skip = position.rows if position is not None and ref.path == position.segment else 0
                yield from _positioned(ref.path, batches, skip)
                del batches  # drop this segment before waiting for the next one

    def _download(self, path: str) -> bytes:
        return download_segment(self.container, path)


def download_segment(container: ContainerClient, path: str) -> bytes:
    """A segment's bytes. A segment is one GET (far below the SDK's 32 MiB first request): its body is taken as
    the SDK holds it, not written into a stream and copied out again as `readall()` does (about 15 % of a
    download's CPU). A larger blob comes in the SDK's chunks, one after another."""
    chunks = container.download_blob(path, max_concurrency=DOWNLOAD_CONCURRENCY).chunks()
    return b"".join(chunks)


@dataclass(frozen=True)
class ReadPosition:
    """Where a window read stands: `rows` rows of `segment` (a segment path) have been read."""

    segment: str
    rows: int


def _positioned(path: str, batches: list[pa.RecordBatch], skip: int) -> Iterator[tuple[ReadPosition, pa.RecordBatch]]:
    """One segment's batches after its first `skip` rows, each with the position after it."""
    done = 0
    for batch in batches:
        if done + batch.num_rows <= skip:
            done += batch.num_rows
            continue
        if done < skip:
            batch, done = batch.slice(skip - done), skip
        done += batch.num_rows
        yield ReadPosition(path, done), batch


def _conform(
    data: bytes, schema: pa.Schema, event_names: frozenset[str] | None, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """One segment's rows of the wanted event names, in batches of at most `batch_rows`, shaped as `schema`."""
    present, batches = segment_batches(data, schema.names, event_names)
    for whole in batches:
        for offset in range(0, whole.num_rows, batch_rows):
            batch = whole.slice(offset, batch_rows)
            arrays = [batch.column(n) if n in present else pa.nulls(batch.num_rows, pa.string()) for n in schema.names]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
