"""A window's manifest, `{file name}.manifest.json`: written after the file commits, so a consumer that
sees it knows the file is complete, and can check it (rows, bytes, SHA-256) without counting rows.

It is a pure function of the file's facts (`FileFacts`), which come from the stream that wrote the
file: whoever streamed the bytes supplies them (one invocation, or several, each continuing the
SHA-256 from the state recorded with the last block before it). Nothing in it depends on when it was written, so a replay writes the same manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..clock import iso
from ..errors import InternalError
from ..windows import Window
from . import sha256
from .blocks import Emit, Mark
from .destination import Destination
from .formats.types import ColumnTypes
from .naming import manifest_path
from .plan import Selection
from .progress import CannotContinue, WindowProgress
from .sha256 import Sha256, UnrestorableState

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from ..ucd.values import Json

log = logging.getLogger(__name__)


class StreamDigest:
    """The SHA-256 of a file computed from its bytes as they stream past, block by block, to the uploader.

    Where the hash's state can be saved (`exporter/export/sha256.py`), `state()` after a block continues
    the hash in another invocation (`StreamDigest(state)`); elsewhere `state()` is empty.
    """

    def __init__(self, state: bytes = b"", length: int | None = None) -> None:
        """`length`: the bytes hashed into `state`, checked against it (UnrestorableState)."""
        self._hash: Sha256 | hashlib._Hash = Sha256(state, length) if state or sha256.available() else hashlib.sha256()

    def state(self) -> bytes:
        """The hash's state after the bytes so far (empty where it cannot be saved)."""
        return self._hash.state() if isinstance(self._hash, Sha256) else b""

    def add(self, block: bytes) -> None:
        """The file's next block (blocks in order)."""
        self._hash.update(block)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def file_digest(selection: Selection, progress: WindowProgress, whole: bool = True) -> StreamDigest | None:
    """The file's SHA-256 (its run record keeps it; a manifest states it), continued from the recorded
    blocks' state; with a manifest, CannotContinue if that state cannot be restored here (saved by another
    host's OpenSSL, or damaged).

    None for a part of a split file (`whole` False: one hash runs over the whole stream, in order), and for
    a file without a manifest whose recorded state is missing or unusable: its run record has no SHA-256.
    """
    if not whole:
        return None
    if not progress.blocks:
        return StreamDigest()
    if not progress.digest:
        if not selection.manifest:
            return None
        raise InternalError("a file with a manifest was continued without its SHA-256 state")
    try:
        return StreamDigest(progress.digest, progress.bytes)
    except UnrestorableState as unusable:
        if not selection.manifest:
            return None
        raise CannotContinue(f"the file's saved SHA-256 state cannot be continued here ({unusable})") from unusable


def hashed(digest: StreamDigest, stage: Emit) -> Emit:
    """`stage`, with every block hashed on its way (blocks are handed on in order), and the hash's state
    after it carried in its mark, so that its progress record continues the hash."""

    def through(block: bytes, mark: Mark) -> None:
        digest.add(block)
        stage(block, replace(mark, digest=digest.state()))

    return through


@dataclass(frozen=True)
class FileFacts:
    """What a manifest says about one committed window file."""

    account: str
    integration_id: str
    window: Window
    path: str
    format: str
    rows: int
    bytes: int
    sha256: str
    columns: ColumnTypes


def manifest_json(facts: FileFacts) -> dict[str, Json]:
    """The manifest's content, in a fixed key order."""
    return {
        "file": facts.path.rsplit("/", 1)[-1],
        "path": facts.path,
        "account": facts.account,
        "integration_id": facts.integration_id,
        "window": {
            "start": facts.window.start_unix,
            "end": facts.window.end_unix,
            "start_iso": iso(facts.window.start),
            "end_iso": iso(facts.window.end),
        },
        "format": facts.format,
        "rows": facts.rows,
        "bytes": facts.bytes,
        "sha256": facts.sha256,
        "columns": facts.columns.to_json(),
    }


def manifest_bytes(facts: FileFacts) -> bytes:
    """UTF-8 JSON, indented for people, ending in a newline; the same facts give the same bytes."""
    return (json.dumps(manifest_json(facts), indent=2, ensure_ascii=False) + "\n").encode()


def write_manifest(destination: Destination, facts: FileFacts) -> str:
    """Write the manifest beside the committed file (one staged block, one commit); return its path."""
    path = manifest_path(facts.path)
    try:
        destination.stage_block(path, 0, manifest_bytes(facts))
        destination.commit_blocks(path, 1)
    except BaseException:
        try:
            destination.abandon_blocks(path)
        except Exception:  # noqa: BLE001 - best effort: the failure that got us here is the one to raise
            log.warning("could not abandon the staged manifest %s", path)
        raise
    return path
