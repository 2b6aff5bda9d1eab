"""Export one window into a destination, as staged blocks and one commit (docs/invariants.md: atomic, deterministic files).

The encoder is the selection's format (exporter/export/formats); a manifest (exporter/export/manifest.py) follows the commit.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..ucd import UcdStore
from ..windows import Window
from .csv_writer import BLOCK_BYTES, BlockSink
from .destination import Destination
from .formats import file_format, fix_types
from .formats.types import column_types
from .manifest import FileFacts, StreamDigest, write_manifest
from .naming import window_path
from .plan import Selection, column_plan

MAX_IN_FLIGHT = 4  # blocks staged (or queued) at once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowExport:
    path: str
    rows: int
    bytes: int
    duration_s: float
    sha256: str | None = None  # with a manifest: the file's SHA-256, from the stream


class BlockUploader:
    """Stages blocks in the background while the next batch is read and encoded.

    At most `max_in_flight` blocks are held (queued or uploading): the producer waits beyond that,
    so memory stays bounded by blocks, not by the file.
    """

    def __init__(self, destination: Destination, path: str, max_in_flight: int = MAX_IN_FLIGHT):
        self.destination = destination
        self.path = path
        self.count = 0  # blocks handed to the pool so far
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="stage")
        self._futures: list[Future] = []

    def stage(self, data: bytes) -> None:
        self._raise_if_failed()
        index, self.count = self.count, self.count + 1
        self._slots.acquire()
        future = self._pool.submit(self.destination.stage_block, self.path, index, data)
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures.append(future)

    def _raise_if_failed(self) -> None:
        for future in self._futures:
            failure = future.exception() if future.done() else None
            if failure is not None:
                raise failure
        self._futures = [f for f in self._futures if not f.done()]

    def commit(self) -> None:
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True)
        self.destination.commit_blocks(self.path, self.count)

    def abandon(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.destination.abandon_blocks(self.path)
        except Exception:  # noqa: BLE001 - best effort: the failure that got us here is the one to raise
            log.warning("could not abandon the staged blocks of %s", self.path)


def export_window(
    ucd: UcdStore,
    account: str,
    integration_id: str,
    selection: Selection,
    window: Window,
    destination: Destination,
    *,
    block_bytes: int = BLOCK_BYTES,
    max_in_flight: int = MAX_IN_FLIGHT,
) -> WindowExport:
    """Stream the window's rows into one file of the selection's format under its deterministic name;
    nothing is visible until commit. With a manifest, the manifest follows the commit."""
    started = time.monotonic()
    selection = fix_types(selection, lambda: ucd.catalog(account))  # the worker fixed them already; a test may not
    encoder = file_format(selection.format)
    plan = column_plan(selection.events, selection.attributes)
    types = column_types(plan, dict(selection.param_types or ()))
    path = window_path(destination.prefix, account, integration_id, window, encoder.extension)
    batches = ucd.read_window(
        account, window.start, window.end, event_names=plan.event_names, columns=plan.source_columns
    )
    uploader = BlockUploader(destination, path, max_in_flight)
    digest = StreamDigest() if selection.manifest else None
    sink = BlockSink(digest.passing(uploader.stage) if digest else uploader.stage, block_bytes)
    try:
        rows = encoder.encode(batches, plan, types, sink)
        uploader.commit()
    except BaseException:
        uploader.abandon()
        raise
    if digest is None:
        return WindowExport(path, rows, sink.bytes_written, time.monotonic() - started)
    facts = FileFacts(
        account, integration_id, window, path, encoder.name, rows, sink.bytes_written, digest.hexdigest(), types
    )
    write_manifest(destination, facts)
    return WindowExport(path, rows, sink.bytes_written, time.monotonic() - started, facts.sha256)
