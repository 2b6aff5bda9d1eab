"""The soak's verdict, from the destinations alone (its own reader and the csv module), the store's
entry times (segments, read through the store's read API) and the soak's own ledger.

I1: every acknowledged event is stored once; every stored event an integration selects, with entry
time at or after its activation, is in exactly one of its files: the one whose window covers its
entry time. I2/I3: every window from activation to the last due one has exactly one file, contiguous,
each the frequency in force. I4: every file is a committed blob with the right name and header whose
rows parse.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import re
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .soak_ledger import EventLedger, IntegrationRecord
from .soak_sites import Delivered, Site

FILE_RE = re.compile(
    r"(?P<account>[a-z0-9][a-z0-9-]*)_events_(?P<id>[0-9a-f]+)_(?P<start>\d+)_(?P<end>\d+)\.csv(\.gz)?"
)
MAX_FAILURES = 60  # messages kept in the report; the counts are always complete
MS = timedelta(milliseconds=1)


@dataclass
class Verdict:
    acknowledged: int = 0
    stored: int = 0
    lost_at_ingest: int = 0
    duplicated_in_store: int = 0
    unknown_in_store: int = 0
    lost_in_export: int = 0
    duplicated_in_files: int = 0
    misplaced: int = 0
    rows_exported: int = 0
    windows_expected: int = 0
    files: int = 0
    files_by_kind: Counter[str] = field(default_factory=Counter)  # destination type -> files read
    missing_windows: int = 0
    extra_files: int = 0
    bad_files: int = 0
    uncommitted_blobs: int = 0
    failures: list[str] = field(default_factory=list)
    failure_count: int = 0

    @property
    def lost(self) -> int:
        return self.lost_at_ingest + self.lost_in_export

    @property
    def duplicated(self) -> int:
        return self.duplicated_in_store + self.duplicated_in_files

    @property
    def ok(self) -> bool:
        return self.failure_count == 0

    def fail(self, message: str) -> None:
        self.failure_count += 1
        if len(self.failures) < MAX_FAILURES:
            self.failures.append(message)


# ------------------------------------------------------------------ the store's entry times


def entry_times(ucd, account: str, start: datetime, end: datetime) -> dict[str, list[int]]:
    """Each stored event id of an account with the entry time (ms) of every segment holding it.

    Segment names give the entry times (`ucd.segments`); the rows of each entry instant come from
    `ucd.read_window` over that one millisecond.
    """
    instants = sorted({ref.entry_ms for ref in ucd.segments(account, start, end)})

    def read(ms: int) -> tuple[int, list[str]]:
        at = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        ids: list[str] = []
        for batch in ucd.read_window(account, at, at + MS):
            ids += batch.column("event_id").to_pylist()
        return ms, ids

    found: dict[str, list[int]] = defaultdict(list)
    with ThreadPoolExecutor(8) as pool:
        for ms, ids in pool.map(read, instants):
            for event_id in ids:
                found[event_id].append(ms)
    return found


# ------------------------------------------------------------------ the check


def check(
    events: EventLedger,
    stored: dict[str, list[int]],
    integrations: list[IntegrationRecord],
    sites: dict[str, Site],
    until: datetime,
    settle: timedelta,
) -> Verdict:
    verdict = Verdict(acknowledged=len(events.acknowledged), stored=len(stored))
    _check_store(verdict, events, stored)
    by_id = {r.id: r for r in integrations}
    delivered: dict[str, list[tuple[int, int, list[list[str]]]]] = defaultdict(list)
    for site in sites.values():
        _read_site(verdict, site, by_id, delivered)
    for record in integrations:
        _check_integration(verdict, record, delivered.get(record.id, []), events, stored, until, settle)
    return verdict


def _check_store(verdict: Verdict, events: EventLedger, stored: dict[str, list[int]]) -> None:
    for event_id in sorted(events.acknowledged - stored.keys()):
        verdict.lost_at_ingest += 1
        facts = events.facts[event_id]
        verdict.fail(
            f"lost at ingest: {event_id} ({facts.account} {facts.user_id} {facts.name} {facts.timestamp}) "
            "was acknowledged but is in no segment"
        )
    for event_id, entries in stored.items():
        if event_id not in events.facts:
            verdict.unknown_in_store += 1
            verdict.fail(f"stored but never sent: {event_id}")
        if len(entries) > 1:
            verdict.duplicated_in_store += len(entries) - 1
            verdict.fail(f"stored {len(entries)} times: {event_id} (entry ms {sorted(entries)})")


def _read_site(
    verdict: Verdict,
    site: Site,
    by_id: dict[str, IntegrationRecord],
    delivered: dict[str, list[tuple[int, int, list[list[str]]]]],
) -> None:
    verdict.uncommitted_blobs += len(site.uncommitted())
    for found in site.files():
        verdict.files += 1
        verdict.files_by_kind[site.kind] += 1
        match = FILE_RE.fullmatch(found.path.rsplit("/", 1)[-1])
        record = by_id.get(match["id"]) if match else None
        if record is None or record.spec.site != site.name:
            verdict.bad_files += 1
            verdict.fail(f"{site.name}: {found.path} belongs to no integration of this destination")
            continue
        start, end = int(match["start"]), int(match["end"])
        if found.path != record.file_path(_utc(start), _utc(end)) or match["account"] != record.spec.account:
            verdict.bad_files += 1
            verdict.fail(f"{site.name}: {found.path} is misnamed (expected {record.file_path(_utc(start), _utc(end))})")
            continue
        rows = _parse(verdict, site.name, found, record)
        if rows is not None:
            delivered[record.id].append((start, end, rows))


def _parse(verdict: Verdict, site: str, found: Delivered, record: IntegrationRecord) -> list[list[str]] | None:
    """The data rows of a complete, well-formed file; None (and a failure) otherwise."""
    where = f"{site}: {found.path}"
    if len(found.data) != found.size:
        verdict.bad_files += 1
        verdict.fail(f"{where}: listed as {found.size} bytes, read {len(found.data)}")
        return None
    try:
        data = gzip.decompress(found.data) if found.path.endswith(".gz") else found.data  # csv.gz: its members
    except (OSError, EOFError, zlib.error) as error:
        verdict.bad_files += 1
        verdict.fail(f"{where}: does not decompress as gzip ({error})")
        return None
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error) as error:
        verdict.bad_files += 1
        verdict.fail(f"{where}: does not parse as CSV ({error})")
        return None
    if not rows or rows[0] != record.header():
        verdict.bad_files += 1
        verdict.fail(f"{where}: header {rows[0] if rows else None} is not {record.header()}")
        return None
    if not data.endswith(b"\r\n"):
        verdict.bad_files += 1
        verdict.fail(f"{where}: does not end with a complete line")
        return None
    width = len(rows[0])
    bad = [i for i, row in enumerate(rows[1:], 2) if len(row) != width]
    if bad:
        verdict.bad_files += 1
        verdict.fail(f"{where}: line {bad[0]} has the wrong number of cells")
        return None
    return rows[1:]


def _check_integration(
    verdict: Verdict,
    record: IntegrationRecord,
    files: list[tuple[int, int, list[list[str]]]],
    events: EventLedger,
    stored: dict[str, list[int]],
    until: datetime,
    settle: timedelta,
) -> None:
    label = f"{record.spec.label} ({record.id})"
    expected = [(int(s.timestamp()), int(e.timestamp())) for s, e in record.windows(record.deleted_at or until, settle)]
    files = sorted(files)
    found = [(s, e) for s, e, _rows in files]
    if record.deleted_at is not None:
        # Deleted: what it delivered before the deletion must be a gap-free start of its windows.
        expected = expected[: len(found)]
    verdict.windows_expected += len(expected)
    _compare_windows(verdict, label, expected, found)
    covered = expected if record.deleted_at is None else found
    if not covered:
        return
    starts = [s * 1000 for s, _e in covered]
    span = (covered[0][0] * 1000, covered[-1][1] * 1000)
    seen: Counter[str] = Counter()
    for start, end, rows in files:
        verdict.rows_exported += len(rows)
        for row in rows:
            _check_row(verdict, label, record, (start, end), row, events, stored)
            seen[row[0]] += 1
    for event_id, count in seen.items():
        if count > 1:
            verdict.duplicated_in_files += count - 1
            verdict.fail(f"{label}: {event_id} exported {count} times")
    for event_id, entries in stored.items():
        facts = events.facts.get(event_id)
        if facts is None or facts.account != record.spec.account or facts.name not in record.selected:
            continue
        entry = min(entries)
        if not span[0] <= entry < span[1] or seen[event_id]:
            continue
        verdict.lost_in_export += 1
        window = covered[bisect.bisect_right(starts, entry) - 1]
        verdict.fail(
            f"{label}: lost {event_id} ({facts.name}, entry {_utc(entry / 1000):%Y-%m-%dT%H:%M:%S.%f}) "
            f"not in its window {window[0]}-{window[1]}"
        )


def _compare_windows(
    verdict: Verdict, label: str, expected: list[tuple[int, int]], found: list[tuple[int, int]]
) -> None:
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    verdict.missing_windows += len(missing)
    verdict.extra_files += len(extra)
    if missing:
        verdict.fail(f"{label}: {len(missing)} window(s) without a file, first {missing[0]}")
    if extra:
        verdict.fail(f"{label}: {len(extra)} file(s) for windows that should not exist, first {extra[0]}")


def _check_row(
    verdict: Verdict,
    label: str,
    record: IntegrationRecord,
    window: tuple[int, int],
    row: list[str],
    events: EventLedger,
    stored: dict[str, list[int]],
) -> None:
    event_id = row[0]
    facts = events.facts.get(event_id)
    entries = stored.get(event_id)
    if facts is None or entries is None:
        verdict.misplaced += 1
        verdict.fail(f"{label}: {event_id} in file {window} was never {'sent' if facts is None else 'stored'}")
        return
    if facts.name not in record.selected or facts.account != record.spec.account:
        verdict.misplaced += 1
        verdict.fail(f"{label}: {event_id} ({facts.account} {facts.name}) is not selected but in file {window}")
    elif not any(window[0] * 1000 <= e < window[1] * 1000 for e in entries):
        verdict.misplaced += 1
        verdict.fail(f"{label}: {event_id} with entry ms {entries} is in file {window}, which does not cover it")
    expected = [event_id, facts.user_id, facts.name, facts.timestamp]
    header = record.header()
    params = record.params_of(facts.name)
    for key in header[4:]:
        if key.startswith("attr_"):
            break
        expected.append((facts.params.get(key) or "") if key in params else "")
    if row[: len(expected)] != expected:
        verdict.bad_files += 1
        verdict.fail(f"{label}: row of {event_id} in file {window} is {row[: len(expected)]}, sent {expected}")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def summary(verdict: Verdict) -> dict[str, int]:
    keys = (
        "acknowledged",
        "stored",
        "lost_at_ingest",
        "duplicated_in_store",
        "unknown_in_store",
        "lost_in_export",
        "duplicated_in_files",
        "misplaced",
        "rows_exported",
        "windows_expected",
        "files",
        "missing_windows",
        "extra_files",
        "bad_files",
        "uncommitted_blobs",
    )
    return {k: getattr(verdict, k) for k in keys}
