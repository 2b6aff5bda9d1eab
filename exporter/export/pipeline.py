"""The upload pipeline: blocks staged in the background, at most MAX_IN_FLIGHT at once, while the next
batch is read and encoded (`BlockUploader`), and each block's progress recorded once every block
before it has landed (`ProgressRecorder`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import InternalError
from .blocks import Mark
from .destination import Destination, UploadState
from .progress import WindowProgress, with_block

MAX_IN_FLIGHT = 4  # blocks staged (or queued) at once

log = logging.getLogger(__name__)


class ProgressRecorder:
    """Records the progress of the blocks staged in order so far, as each one lands (any order)."""

    def __init__(self, start: WindowProgress, record: Callable[[WindowProgress], None] | None):
        self.progress = start
        self._record = record
        self._landed: dict[int, tuple[Mark, UploadState]] = {}
        self._lock = threading.Lock()

    def landed(self, index: int, mark: Mark, state: UploadState) -> None:
        with self._lock:  # one record at a time, so the records only ever move forward
            self._landed[index] = (mark, state)
            recordable = None
            while self.progress.blocks in self._landed:
                m, s = self._landed.pop(self.progress.blocks)
                self.progress = with_block(self.progress, m.position, m.rows, m.bytes, s, m.digest)
                # The last block is not recorded: the commit (or a part's complete record) follows at once,
                # and a worker dying before it stages this one block again.
                if not m.last:
                    recordable = self.progress
            if self._record is not None and recordable is not None:
                self._record(recordable)


class BlockUploader:
    """Stages blocks in the background while the next batch is read and encoded.

    At most `max_in_flight` blocks are held (queued or uploading): the producer waits beyond that,
    so memory stays bounded by blocks, not by the file.
    """

    def __init__(
        self,
        destination: Destination,
        path: str,
        recorder: ProgressRecorder,
        max_in_flight: int = MAX_IN_FLIGHT,
        first_index: int = 0,
    ):
        self.destination = destination
        self.path = path
        self.recorder = recorder
        self.first_index = first_index
        self.count = first_index + recorder.progress.blocks  # the next block's index
        self.staged_bytes = 0
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="stage")
        self._futures: list[Future] = []
        self.staged: Callable[[bytes], None] = lambda _block: None  # told of each block once the destination has it

    def stage(self, data: bytes, mark: Mark) -> None:
        self._raise_if_failed()
        index, self.count = self.count, self.count + 1
        self.staged_bytes += len(data)
        self._slots.acquire()
        future = self._pool.submit(self._stage, index, data, mark)
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures.append(future)

    def _stage(self, index: int, data: bytes, mark: Mark) -> None:
        state = self.destination.stage_block(self.path, index, data)
        self.recorder.landed(index - self.first_index, mark, state or UploadState())
        self.staged(data)  # a destination keeps no reference to a block once it has staged it

    def _raise_if_failed(self) -> None:
        for future in self._futures:
            failure = future.exception() if future.done() else None
            if failure is not None:
                raise failure
        self._futures = [f for f in self._futures if not f.done()]

    def drain(self) -> None:
        """Wait for every block handed over; raise the first failure."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True)

    def commit(self) -> None:
        self.drain()
        if self.first_index:
            raise InternalError("a part of a split file is committed with the others, not alone")
        self.destination.commit_blocks(self.path, self.count)

    def stop(self) -> None:
        """Stop after a failure: blocks not yet started are dropped, those uploading finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abandon(self) -> None:
        self.stop()
        abandon(self.destination, self.path)


def abandon(destination: Destination, path: str) -> None:
    """Give up the blocks staged for `path`, best effort: the failure (or the fresh start) that got us here
    does not depend on it, and the destination's own expiry ends what is left."""
    try:
        destination.abandon_blocks(path)
    except Exception:  # noqa: BLE001 - best effort, see above
        log.warning("could not abandon the staged blocks of %s", path)
