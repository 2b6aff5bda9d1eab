"""Per-file uploads of the destinations that open one at the service (S3 multipart uploads, GCS resumable
sessions): each opened once by the first block to arrive, and its first failure kept for the other blocks."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import ExporterError, InternalError, TransientError
from .common import Classify, translated


@dataclass
class Upload:
    """One file's upload at the service: its handle once opened, and its first failure (later calls raise it)."""

    handle: str | None = None  # S3: the UploadId; GCS: the resumable session URI
    failure: ExporterError | None = None
    turn: threading.Condition = field(default_factory=threading.Condition)  # guards every field


U = TypeVar("U", bound=Upload)


class Uploads(Generic[U]):
    """A destination's uploads in progress, by path: each opened once, by the first block to arrive."""

    def __init__(self, new: Callable[[], U]):
        self._new = new
        self._open: dict[str, U] = {}
        self._lock = threading.Lock()

    def open(self, path: str, create: Callable[[], str], classify: Classify) -> U:
        """The path's upload, `create()`d under its lock if not yet (the other blocks wait for it); a failure
        `classify` knows not (a bug of ours) is re-raised as it is."""
        with self._lock:
            upload = self._open.setdefault(path, self._new())
        with upload.turn:
            if upload.handle is None and upload.failure is None:
                try:
                    upload.handle = create()
                except Exception as exc:  # noqa: BLE001 - classified, never re-raised with SDK text
                    upload.failure = translated(exc, classify)
            if upload.failure is not None:
                raise copy.copy(upload.failure) from None
        return upload

    def adopt(self, path: str, upload: U) -> None:
        """Continue an upload another invocation opened."""
        with self._lock:
            self._open[path] = upload

    def get(self, path: str) -> U | None:
        with self._lock:
            return self._open.get(path)

    def pop(self, path: str) -> U | None:
        with self._lock:
            return self._open.pop(path, None)


def record_failure(
    upload: Upload, exc: BaseException, classify: Classify, give_up: Callable[[], None]
) -> ExporterError:
    """Keep the upload's first failure (a copy is raised by every later call); `give_up()` unless it may pass.

    A transient failure keeps the upload, so the next invocation continues it (docs/architecture.md, resumable
    windows); a refusal gives it up at once (an S3 upload aborted, a GCS session cancelled). A bug of ours
    (`classify` knows it not) fails the upload's other blocks as an internal error, and is itself re-raised as
    it is, with its traceback.
    """
    failure = exc if isinstance(exc, ExporterError) else classify(exc)
    with upload.turn:
        if upload.failure is None:
            upload.failure = failure or InternalError(f"internal error ({type(exc).__name__})")
            if not isinstance(upload.failure, TransientError):
                give_up()
        upload.turn.notify_all()
        if failure is None:
            raise exc
        return copy.copy(upload.failure)
