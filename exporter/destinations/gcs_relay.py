"""A split GCS file's commit: its parts, staged in the service's own storage, relayed into one session in order.

A GCS resumable session takes bytes strictly in order, and joining objects (`compose`) needs more
than customers grant, so the parts of a split GCS window stage in the service's staging container
(exporter/jobs/staging.py) and the worker that claims the window's commit relays the parts' bytes,
in order, into one resumable session (`relay`), recording the session after every relayed chunk like
a resumable window's progress, so the relay continues in a follow-up when its time runs out and
after a killed worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from ..export.destination import Destination, PartStaging, UploadLost
from ..export.progress import Checkpoints, WindowProgress, no_progress, with_block

RELAY_BLOCK = 8 * 1024 * 1024  # bytes read from a staged blob and sent to the session at once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Piece:
    """One relayed chunk: `length` bytes at `offset` of the staging blob `name`."""

    name: str
    offset: int
    length: int


def pieces(sources: Sequence[tuple[str, int]], size: int, start: int = 0) -> list[Piece]:
    """The file's bytes from `start` on, in order: each staged blob (name, bytes) cut into pieces of at most `size`."""
    cut: list[Piece] = []
    for name, total in sources:
        first = min(max(start, 0), total)  # where this blob's bytes still to send begin
        cut += [Piece(name, offset, min(size, total - offset)) for offset in range(first, total, size)]
        start -= total
    return cut


def relay(
    staging: PartStaging,
    destination: Destination,
    path: str,
    sources: Sequence[tuple[str, int]],
    checkpoints: Checkpoints,
    out_of_time: Callable[[], bool],
) -> bool:
    """Send the staged parts (name, bytes), in order, into the file at `path`, and commit it; False: time ran out.

    Continues from the recorded progress (the session, the pieces and the bytes it holds); records
    each piece sent; once `out_of_time()` it stops after a piece (at least one per call). The pieces
    still to send start at the recorded bytes, so where the file is cut into pieces never changes its bytes.
    """
    progress = _resumed(destination, path, checkpoints)
    chunks = pieces(sources, RELAY_BLOCK, progress.bytes)
    sent = progress.blocks  # the session's block indexes run on across invocations
    with closing(_read_ahead(staging, chunks)) as ahead:  # closed at once: no read is left running
        for number, data in enumerate(ahead, start=1):
            state = destination.stage_block(path, sent, data)
            sent += 1
            progress = with_block(progress, None, 0, progress.bytes + len(data), state)
            checkpoints.record(progress)
            if number < len(chunks) and out_of_time():
                return False
    destination.commit_blocks(path, sent)
    return True


def _resumed(destination: Destination, path: str, checkpoints: Checkpoints) -> WindowProgress:
    """The recorded relay, if its session can be continued; else a fresh start (a new session, same bytes)."""
    saved = checkpoints.saved()
    if saved is None or saved.path != path or saved.blocks == 0:
        return no_progress(path)
    try:
        destination.resume_upload(path, saved.upload, range(saved.blocks))
    except UploadLost:
        log.warning("the session of a relayed file is gone; the relay starts again")
        checkpoints.clear()
        return no_progress(path)
    return saved


def _read_ahead(staging: PartStaging, chunks: list[Piece]) -> Generator[bytes]:
    """The pieces' bytes in order, each read while the one before is sent (two pieces in memory at most)."""
    if not chunks:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="relay-read") as reader:
        ahead = reader.submit(_read, staging, chunks[0])
        for following in [*chunks[1:], None]:
            data = ahead.result()
            if following is not None:
                ahead = reader.submit(_read, staging, following)
            yield data


def _read(staging: PartStaging, piece: Piece) -> bytes:
    return staging.read(piece.name, piece.offset, piece.length)
