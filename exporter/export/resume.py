"""Which window files resume and split, and how an export continues a file's recorded blocks or starts
it again (docs/architecture.md, "Windows of any size").

Every file can be continued (`continuable`), with a manifest too where the SHA-256's state can be saved
(each block's progress carries it); a format's blocks end only where the format lets them
(exporter/export/formats/base.py, `FileCuts`). Only a file whose format can be written in parts and
that has no manifest is split across workers (`splittable`): the parts' hashes could not be joined.
What was recorded is continued if the destination still has its upload and the format and the hash
can pick up where it stopped; otherwise the file starts again from its first block (`Continued.restarted`
says why), never a failed window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import InternalError
from . import sha256
from .destination import Destination, UploadLost, UploadState
from .formats import file_format
from .pipeline import BlockUploader, ProgressRecorder, abandon
from .plan import Selection
from .progress import CannotContinue, Checkpoints, WindowProgress, no_progress

log = logging.getLogger(__name__)

Opened = TypeVar("Opened")


def continuable(selection: Selection) -> bool:
    """Whether a window's file can stop after a block and be continued by a follow-up invocation.

    Every format: its blocks end only where nothing in the bytes to come depends on the bytes before
    (`FileCuts`): a block list, a read position and whatever the format keeps per block (a Parquet
    footer's pieces, `keeps_notes`) are all a continuation needs; with a manifest, the SHA-256's state
    after each block too, where it can be saved (`sha256.available()`).
    """
    return not selection.manifest or sha256.available()


def splittable(selection: Selection) -> bool:
    """Whether a window's file can be written in parts by several workers: a continuable file of a format
    written in parts (`FileCuts.in_parts`), without a manifest (one SHA-256 runs over the whole stream,
    in order, and the parts' hashes cannot be joined)."""
    return continuable(selection) and not selection.manifest and file_format(selection.format).in_parts


def keeps_notes(selection: Selection) -> bool:
    """Whether a window's export keeps block notes beside its progress (a continuable Parquet file's footer)."""
    return continuable(selection) and file_format(selection.format).keeps_notes


@dataclass(frozen=True)
class Continued(Generic[Opened]):
    """Where an export of a file begins, what it opened there, and why it starts again if it does."""

    progress: WindowProgress
    opened: Opened
    restarted: str = ""  # the file's recorded blocks could not be continued: why it starts from its first block


def continued(
    destination: Destination,
    path: str,
    checkpoints: Checkpoints | None,
    open_file: Callable[[WindowProgress], Opened],
    first_index: int = 0,
    joins: UploadState | None = None,
    shared: bool = False,
    before_writes: Callable[[], None] = lambda: None,
) -> Continued[Opened]:
    """The file's recorded progress, and what `open_file` makes of it (the format's cuts, the hash), if the
    upload, the format and the hash can continue it; else a fresh start, the upload taken over abandoned.

    `first_index`: a part's first block; `joins`: the split file's upload a part stages into; `shared`: a
    part of a split file, whose upload the other parts stage into too (it never starts again alone).
    `before_writes()`: asked before what this writes (a fresh start forgets the recorded progress and
    gives the upload up); only reads come before it.
    """
    progress, restarted = _recorded(destination, path, checkpoints, first_index, joins, before_writes)
    try:
        return Continued(progress, open_file(progress), restarted)
    except CannotContinue as why:
        if shared or not progress.blocks:
            raise InternalError(f"a fresh file or a part of a split file is not continued: {why}") from why
        log.warning("%s; the file %s is exported again from its start", why, path)
        before_writes()
        # The upload just taken over is given up: its next block would be block 0, which a GCS session takes no more.
        abandon(destination, path)
        if checkpoints is not None:
            checkpoints.clear()
        fresh = no_progress(path)
        return Continued(fresh, open_file(fresh), str(why))


def _recorded(
    destination: Destination,
    path: str,
    checkpoints: Checkpoints | None,
    first_index: int,
    joins: UploadState | None,
    before_writes: Callable[[], None],
) -> tuple[WindowProgress, str]:
    """The recorded progress of this file (or part), if its upload can be continued; else a fresh start, and why."""
    saved = checkpoints.saved() if checkpoints else None
    fresh = no_progress(path)
    if checkpoints is None or saved is None or saved.path != path or saved.blocks == 0:
        saved = fresh
    staged = range(first_index, first_index + saved.blocks)
    state = saved.upload if saved.blocks else joins
    if state is None:
        return saved, ""
    try:
        destination.resume_upload(path, state, staged)
    except UploadLost:
        if joins is not None:
            raise  # the split file's upload is gone: the split starts again (exporter/jobs/delivery.py, `ended_by`)
        log.warning("the staged blocks of %s are gone; the file is exported again from its start", path)
        before_writes()
        if checkpoints is not None:
            checkpoints.clear()
        return fresh, "the staged blocks of the file are gone"
    return saved, ""


def after_failure(
    uploader: BlockUploader, checkpoints: Checkpoints | None, recorder: ProgressRecorder, shared: bool
) -> None:
    """Keep what is recorded for the next invocation; give up an upload nothing can continue.

    A part of a split file never gives up the upload: the other parts stage into it too.
    """
    if shared or (checkpoints is not None and recorder.progress.blocks > 0):
        uploader.stop()
        return
    uploader.abandon()
