"""The delivery audit: what is in the customer's destination, checked against the run records.

`compare` is the judgement, pure (no server): every exported window's file present with the recorded
size and SHA-256 (the hash covers the rows: the same bytes hold the same rows); the exported windows
contiguous from activation to `last_success_end`, with no gap and no overlap; files under the prefix
named like this integration's that belong to no window reported as extra. `audit_delivery` does the
I/O: it lists and reads the destination with the integration's own credentials (never a write),
hashing each file as it streams past, so memory is bounded by a read piece, not by a file.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .clock import parse_instant, to_unix
from .context import Context
from .export.destination import Destination
from .export.formats import FORMAT_NAMES
from .export.naming import EXPORT_TYPE, MANIFEST_SUFFIX, join_prefix
from .runs import RunRecord, RunStatus
from .validation import check_account

if TYPE_CHECKING:
    from .ucd.values import Json

ALL_RECORDS = 10**9  # the audit reads every run record of the integration


@dataclass(frozen=True)
class Problem:
    kind: str  # missing | altered | gap | overlap | extra
    window: tuple[int, int] | None = None  # unix seconds [start, end)
    file: str | None = None

    def to_json(self) -> dict[str, Json]:
        body: dict[str, Json] = {"kind": self.kind}
        if self.window is not None:
            body["window"] = {"start": self.window[0], "end": self.window[1]}
        if self.file is not None:
            body["file"] = self.file
        return body


@dataclass(frozen=True)
class AuditResult:
    windows: int
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Json]:
        return {"ok": self.ok, "windows": self.windows, "problems": [p.to_json() for p in self.problems]}


@dataclass(frozen=True)
class Expected:
    """What the run records say was delivered, and where the audit looks."""

    records: tuple[RunRecord, ...]  # every run record of the integration, any status
    prefix: str
    account: str
    integration_id: str
    activated: int | None  # unix seconds
    delivered_until: int | None  # last_success_end, unix seconds
    start: int | None = None  # --from: windows ending after it
    end: int | None = None  # --to: windows starting before it


@dataclass
class Listing:
    """The destination's files under the prefix (path → size); `sha256(path)` streams one file's hash."""

    sizes: dict[str, int]
    sha256: Callable[[str], str]
    read: list[str] = field(default_factory=list)


def name_pattern(account: str, integration_id: str) -> re.Pattern[str]:
    """A window file's (or its manifest's) name of this integration, any format (exporter.export.naming)."""
    formats = "|".join(re.escape(f) for f in sorted(FORMAT_NAMES, key=len, reverse=True))
    return re.compile(
        rf"{re.escape(account)}_{EXPORT_TYPE}_{re.escape(integration_id)}_(\d+)_(\d+)\.(?:{formats})"
        rf"(?:{re.escape(MANIFEST_SUFFIX)})?"
    )


def compare(expected: Expected, listing: Listing) -> AuditResult:
    """The audit's judgement of one integration's delivery (pure but for `listing.sha256`)."""
    e = expected
    delivered = sorted(
        (
            r
            for r in e.records
            if r.status == RunStatus.EXPORTED and e.delivered_until is not None and r.window_end <= e.delivered_until
        ),
        key=lambda r: (r.window_start, r.window_end),
    )
    in_range = [r for r in delivered if _overlaps(r.window_start, r.window_end, e.start, e.end)]
    problems: list[Problem] = []
    for record in in_range:
        problems.extend(_file_problems(record, listing))
    problems.extend(_tiling_problems(e, in_range))
    problems.extend(_extras(e, listing))
    return AuditResult(len(in_range), tuple(problems))


def _overlaps(start: int, end: int, lo: int | None, hi: int | None) -> bool:
    return (lo is None or end > lo) and (hi is None or start < hi)


def _file_problems(record: RunRecord, listing: Listing) -> Iterator[Problem]:
    window = (record.window_start, record.window_end)
    size = listing.sizes.get(record.file)
    if size is None:
        yield Problem("missing", window, record.file)
    elif size != record.bytes or (record.sha256 and listing.sha256(record.file) != record.sha256):
        yield Problem("altered", window, record.file)


def _tiling_problems(e: Expected, windows: list[RunRecord]) -> Iterator[Problem]:
    """Gaps and overlaps between consecutive windows, and at activation and `last_success_end` when in range."""
    if e.activated is None or e.delivered_until is None:
        return
    cursor = e.activated if e.start is None or e.start <= e.activated else None
    for record in windows:
        if cursor is not None and record.window_start > cursor:
            yield Problem("gap", (cursor, record.window_start))
        elif cursor is not None and record.window_start < cursor:
            yield Problem("overlap", (record.window_start, cursor), record.file)
        cursor = record.window_end if cursor is None else max(cursor, record.window_end)
    until = e.delivered_until
    if cursor is not None and cursor < until and (e.end is None or e.end >= until):
        yield Problem("gap", (cursor, until))


def _extras(e: Expected, listing: Listing) -> Iterator[Problem]:
    """Files named like this integration's, directly under the prefix, that belong to no run record."""
    known = {r.file for r in e.records} | {r.file + MANIFEST_SUFFIX for r in e.records}
    pattern = name_pattern(e.account, e.integration_id)
    for path in sorted(listing.sizes):
        name = path.rsplit("/", 1)[-1]
        match = pattern.fullmatch(name)
        if match is None or path != join_prefix(e.prefix, name) or path in known:
            continue
        start, end = int(match.group(1)), int(match.group(2))
        if _overlaps(start, end, e.start, e.end):
            yield Problem("extra", (start, end), path)


# ------------------------------------------------------------------ the I/O: the destination, read only


class Bar(Protocol):
    def advance(self, n: int = 1) -> None: ...


ProgressFactory = Callable[[int], AbstractContextManager[Bar]]
_progress: contextvars.ContextVar[ProgressFactory | None] = contextvars.ContextVar("audit_progress", default=None)


def show_progress(factory: ProgressFactory) -> None:
    """Have audits in this context report the bytes they read (the CLI's progress bar)."""
    _progress.set(factory)


def file_sha256(destination: Destination, path: str, bar: Bar | None = None) -> str:
    """A file's SHA-256, streamed: one read piece in memory at a time."""
    digest = hashlib.sha256()
    for piece in destination.read_file(path):
        digest.update(piece)
        if bar is not None:
            bar.advance(len(piece))
    return digest.hexdigest()


def audit_delivery(
    ctx: Context, account: str, integration_id: str, start: str | None = None, end: str | None = None
) -> dict[str, Any]:  # the console reads it
    """Check the integration's destination against its run records; `start`/`end` (ISO 8601) bound it."""
    check_account(account)
    integration = ctx.repo.get(account, integration_id)
    lo = to_unix(parse_instant(start, "from")) if start else None
    hi = to_unix(parse_instant(end, "to")) if end else None
    records = tuple(ctx.runs.list(account, integration_id, ALL_RECORDS))
    expected = Expected(
        records,
        integration.destination.prefix,
        account,
        integration_id,
        to_unix(integration.activated_at) if integration.activated_at else None,
        to_unix(integration.last_success_end) if integration.last_success_end else None,
        lo,
        hi,
    )
    destination = ctx.destination_for(integration)
    sizes = {f.path: f.size for f in destination.list_files()}
    factory = _progress.get()
    to_read = _bytes_to_read(records, sizes)
    with factory(to_read) if factory else nullcontext() as bar:

        def sha256(path: str) -> str:
            return hashlib.sha256(b"").hexdigest() if sizes.get(path) == 0 else file_sha256(destination, path, bar)

        return compare(expected, Listing(sizes, sha256)).to_json()


def _bytes_to_read(records: Iterable[RunRecord], sizes: dict[str, int]) -> int:
    return sum(sizes.get(r.file, 0) for r in records if r.sha256 and r.status == RunStatus.EXPORTED)
