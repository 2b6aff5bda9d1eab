"""Split GCS windows: the parts stage in the service's own storage, one relay sends them into the file.

A GCS resumable session takes bytes strictly in order, and joining objects (`compose`) needs
`storage.objects.get` and `.delete`, more than customers grant (objects.create only). So each part
of a split GCS window is exported, resumably and side by side with the others, into a block blob of
its own in the service's staging container (`StagingArea`: the Azure Blob protocol, blocks staged,
then committed as the part's blob). The worker that claims the window's commit relays the parts'
bytes, in order, into one resumable session (`relay`), recording the session after every relayed
chunk like a resumable window's progress, so the relay continues in a follow-up when its time runs
out and after a killed worker. The staged blobs are deleted once the window is forgotten; a
lifecycle rule on the container removes what an abandoned plan left (docs/architecture.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContainerClient

from ..destinations.azure_blob import block_id, check_staged
from ..export.destination import Destination, UploadLost, UploadState
from ..export.progress import Checkpoints, WindowProgress, no_progress, staged_prefix, with_block

RELAY_BLOCK = 8 * 1024 * 1024  # bytes read from a staged blob and sent to the session at once

log = logging.getLogger(__name__)


def staged_name(account: str, integration_id: str, window_start: int, part: int) -> str:
    """The staging blob of one part of a split window."""
    return f"{staged_prefix(account, integration_id, window_start)}part-{part:03d}"


class StagingArea:
    """The service's staging container, as a destination of blocks: a part's blocks, then its blob."""

    prefix = ""  # parts are placed by name (staged_name), never under a customer's prefix

    def __init__(self, container: ContainerClient):
        self.container = container

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        self.container.get_blob_client(path).stage_block(block_id(index), data, length=len(data))
        return UploadState()  # block ids are the names: nothing else to keep

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        """The part's blocks must still be there: uncommitted, or committed by a duplicate delivery."""
        check_staged(self.container.get_blob_client(path), staged, "all")

    def commit_blocks(self, path: str, count: int) -> None:
        """The part's blob: its blocks in order (a repeated commit lists the same blocks, same bytes)."""
        self.container.get_blob_client(path).commit_block_list([BlobBlock(block_id(i)) for i in range(count)])

    def abandon_blocks(self, path: str) -> None:
        """Nothing to do: the part's blocks are kept for its next delivery, and the lifecycle rule ends them."""

    def read(self, piece: Piece) -> bytes:
        """One piece of a part's blob; UploadLost if the blob is gone or shorter than its part recorded."""
        try:
            data = self.container.get_blob_client(piece.name).download_blob(piece.offset, piece.length).readall()
        except ResourceNotFoundError:
            raise UploadLost() from None
        if len(data) != piece.length:
            raise UploadLost()
        return data

    def remove(self, prefix: str) -> None:
        """Delete the staging blobs under `prefix`; best effort (the lifecycle rule removes what stays)."""
        try:
            for blob in self.container.list_blobs(name_starts_with=prefix):
                self.container.delete_blob(blob.name)
        except AzureError as error:
            log.warning("could not delete the staged parts of a window (%s)", type(error).__name__)


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
    staging: StagingArea,
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


def _read_ahead(staging: StagingArea, chunks: list[Piece]) -> Generator[bytes]:
    """The pieces' bytes in order, each read while the one before is sent (two pieces in memory at most)."""
    if not chunks:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="relay-read") as reader:
        ahead = reader.submit(staging.read, chunks[0])
        for following in [*chunks[1:], None]:
            data = ahead.result()
            if following is not None:
                ahead = reader.submit(staging.read, following)
            yield data
