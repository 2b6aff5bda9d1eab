"""What the export engine writes to. Azure Blob implements it today; S3 and GCS implement the same.

A destination names nothing itself (exporter.export.naming does) and shows no secret: the service
stores and shows what `describe()` gives, and every failure is raised as CredentialError,
DestinationError or TransientError with a message built without SDK exception text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if (
    TYPE_CHECKING
):  # the progress module stores UploadState; a JSON value's type only (the ucd package is not loaded for it)
    from ..ucd.values import Json
    from .progress import Checkpoints


@dataclass(frozen=True)
class DestinationInfo:
    """What may be stored and shown about a destination: never a secret."""

    container: str  # the container or bucket the files go into
    masked: str  # the credentials with their secret parts masked: all anyone ever sees


@dataclass(frozen=True)
class Verification:
    """A passed verification: the test file written under the prefix, and whether it could be deleted."""

    test_file: str
    deleted: bool
    note: str | None = None  # why the test file stays, in words the customer can act on

    def to_json(self) -> dict[str, Json]:
        body: dict[str, Json] = {"ok": True, "test_file": {"name": self.test_file, "deleted": self.deleted}}
        if self.note:
            body["note"] = self.note
        return body


@dataclass(frozen=True)
class UploadState:
    """What continuing a file's upload in another invocation needs, as of one staged block.

    `handle` names the upload at the service (S3: the UploadId; GCS: the resumable session URI, a
    bearer secret, sealed at rest; Azure Blob: none, block ids are the names). GCS also needs the
    bytes it has persisted (`offset`) and the unaligned tail not yet sent (`carry`, < 256 KiB).
    """

    handle: str = ""
    offset: int = 0
    carry: bytes = b""


MAX_PARTS = 16  # parts of one split window
PART_STRIDE = 625  # block indexes per part: 16 x 625 = S3's 10,000 part numbers (5 GB of 8 MiB blocks per part)


class PartStaging(Protocol):
    """The service's own storage, for the parts of a file a destination cannot take in place (GCS): blocks
    staged and committed as an object per part, read back in pieces when the destination joins them."""

    prefix: str

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState: ...

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None: ...

    def commit_blocks(self, path: str, count: int) -> None: ...

    def abandon_blocks(self, path: str) -> None: ...

    def read(self, name: str, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` of the part's object `name`; UploadLost if it is gone or shorter."""
        ...


@dataclass(frozen=True)
class SplitFile:
    """One file written in parts, as its parts' jobs and its commit hand it to the destination."""

    path: str
    upload: UploadState  # what `begin_split` opened
    staging: PartStaging  # the service's own storage, for parts not staged in place
    staged: Callable[[int], str]  # part -> its object in `staging`
    joining: Checkpoints  # the progress of a join that takes several invocations (GCS's relay)
    out_of_time: Callable[[], bool]  # a join stops once this is true (after a piece) and continues in a follow-up


@dataclass(frozen=True)
class StagedPart:
    """A part every block of which is staged: its blocks and its bytes."""

    blocks: int
    bytes: int


@dataclass(frozen=True)
class PartPlacement:
    """Where one part of a split file stages its blocks, and how they become the file."""

    path: str  # the file itself, or an object of the part's own
    first_index: int  # its first block's index (parts of one file take disjoint ranges)
    own_object: bool = False  # the part is committed as an object of its own, then joined
    min_last_block: int = 0  # a part other than the file's last must end in a block this large (S3: 5 MiB)
    staging: PartStaging | None = None  # staged in the service's own storage (GCS), not in the destination


@dataclass(frozen=True)
class ListedFile:
    """A file found under the destination's prefix: its path and its size in bytes."""

    path: str
    size: int


READ_CHUNK = 4 * 1024 * 1024  # a file is read in pieces this large: memory is bounded by it, not by the file


class UploadLost(Exception):
    """A saved upload can no longer be continued (aborted, expired, or its blocks gone): start the file again."""


class Destination(Protocol):
    """Where an integration's files go: blocks staged invisibly, then committed at once."""

    prefix: str  # files go under it

    def describe(self) -> DestinationInfo:
        """Where files go and the masked credentials, to store and show."""
        ...

    def verify(self, test_file_name: str) -> Verification:
        """Write a small test file under the prefix, then try to delete it."""
        ...

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        """Upload block `index` (0, 1, ...) of the file at `path`; nothing is visible until the commit.

        Answers the upload's state as of this block: what `resume_upload` needs to continue after it.
        Keeps no reference to `data` once it returns: the runner writes a later block into its memory.
        """
        ...

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        """Continue the upload of `path` whose blocks `staged` (indexes, in order) another invocation staged.

        Raises UploadLost if the upload cannot be continued (or one of those blocks is gone).
        """
        ...

    def commit_blocks(self, path: str, count: int) -> None:
        """Make blocks 0 .. count-1 the file at `path`, at once: complete or not at all."""
        ...

    def abandon_blocks(self, path: str) -> None:
        """Give up an export that failed before its commit (an S3 multipart upload is aborted); best effort."""
        ...

    def list_files(self) -> Iterator[ListedFile]:
        """Every committed file under the prefix (an audit reads them; never writes)."""
        ...

    def read_file(self, path: str) -> Iterator[bytes]:
        """The committed file at `path`, in pieces of at most READ_CHUNK bytes, in order."""
        ...


@runtime_checkable
class SplitDestination(Destination, Protocol):
    """A destination whose files may be written in parts by several workers at once, then committed once.

    Asked of an opened destination at run time (`isinstance`): a destination type implements it or not.
    """

    def begin_split(self, path: str) -> UploadState | None:
        """Open the upload every part of the file at `path` stages into (S3: one multipart upload).

        None if this destination cannot take this file in parts (it is exported whole).
        """
        ...

    def place_part(self, split: SplitFile, part: int) -> PartPlacement:
        """Where part `part` (0, 1, ...) of the file stages its blocks: in place, or in `split.staging`."""
        ...

    def commit_parts(self, split: SplitFile, parts: Sequence[StagedPart]) -> bool:
        """Make the staged parts, in order, the file at `split.path`, at once; temporary objects go.

        False: the join ran out of time (`split.out_of_time`) and continues in a follow-up from `split.joining`.
        """
        ...
