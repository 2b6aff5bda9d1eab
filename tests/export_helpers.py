"""Scenario helpers for the export tests: data, setup, delivery, and the exactly-once check.

They run against the customer's Azure container on Azurite, or against any destination kit of
tests/destination_helpers.py (an Azure container, an S3 bucket on moto, a GCS bucket on the emulator).

`assert_exactly_once` checks what is really stored against docs/invariants.md: each stored event of a
selected type (entry time at or after activation) is in exactly one exported file, the files tile
[activated_at, last_success_end) without gap or overlap, each file holds exactly the rows of its
window, and an empty window has a header-only file.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
import threading
from collections import Counter
from datetime import timedelta

from exporter.clock import from_unix, iso
from exporter.destinations import open_destination as real_open_destination
from exporter.errors import TransientError
from exporter.export.csv_writer import Writable
from exporter.export.formats.csv import CsvRows
from exporter.export.formats.types import column_types
from exporter.export.naming import join_prefix, window_path
from exporter.export.plan import ColumnPlan, Selection, column_plan
from exporter.integrations.model import Status
from exporter.jobs import process_job, schedule
from exporter.jobs.attempt import recorded_selection
from exporter.local.host import drain
from exporter.runs import RunStatus
from exporter.windows import Window, is_due
from tests.helpers import T0, call, integration_body

ACCOUNT = "acme"
H = timedelta(hours=1)
SETTLE = timedelta(seconds=120)
ACT = T0 + timedelta(minutes=17, seconds=23)  # activation off the clock hour

_seq = itertools.count()


# ------------------------------------------------------------------ data and setup


def upsert(ctx, users: int = 2) -> int:
    """Store 3 events per user (two selected types, one not) plus an anonymous user's event."""
    k = next(_seq)
    when = lambda i, j: iso(T0 - timedelta(days=3) + timedelta(seconds=k * 10 + i, milliseconds=j))  # noqa: E731
    body = {
        "users": [
            {
                "user_id": f"u{i}",
                "attributes": {"email": f"u{i}@example.com"},
                "events": [
                    {
                        "event_name": "purchase",
                        "timestamp": when(i, 1),
                        "event_params": {"price": k + i / 2, "currency": 'EUR, "x"'},
                    },
                    {"event_name": "email_open", "timestamp": when(i, 2), "event_params": {"campaign": f"c{k}"}},
                    {"event_name": "page_view", "timestamp": when(i, 3)},
                ],
            }
            for i in range(users)
        ]
        + [{"user_id": f"anon-{k}", "events": [{"event_name": "email_open", "timestamp": when(9, 4)}]}]
    }
    answer = call(ctx, "ucd_upsert", body, account=ACCOUNT)
    assert answer.status == 200, answer.body
    assert answer.body["stored_events"] == 3 * users + 1
    return answer.body["stored_events"]


def populate(ctx, clock, hours: range, skip: set[int] = frozenset()) -> None:
    """Events at the start instant of each window (a boundary), inside it, and near its end."""
    for h in hours:
        if h in skip:
            continue
        for offset in (timedelta(0), timedelta(minutes=23), timedelta(minutes=59, seconds=59)):
            if ACT + h * H + offset < clock.now():
                continue  # the clock never runs backwards
            clock.set(ACT + h * H + offset)
            upsert(ctx)


def create(ctx, clock, connection: str, container: str, **overrides) -> str:
    clock.set(ACT - timedelta(minutes=10))
    upsert(ctx)  # stored before activation: must never be exported
    clock.set(ACT)
    created = call(ctx, "integrations_create", integration_body(connection, container, **overrides), account=ACCOUNT)
    assert created.status == 201, created.body
    assert created.body["activated_at"] == iso(ACT)
    return created.body["id"]


def due_at(hours: int) -> timedelta:
    return ACT + hours * H + SETTLE


def deliver_one(ctx):
    """Receive one job and run it as the host would; on a crash the message becomes visible again."""
    queue = ctx.storage.queue()
    messages = list(queue.receive_messages(max_messages=1, visibility_timeout=300))
    assert len(messages) == 1, "expected one queued job"
    message = messages[0]
    try:
        result = process_job(ctx, message.content, message.dequeue_count)
    except BaseException:
        queue.update_message(message, visibility_timeout=0)  # the host redelivers it
        raise
    queue.delete_message(message)
    return result


def tick_collecting(ctx, results: list) -> dict:
    """`tick`, keeping each job's result."""
    scheduled = schedule(ctx)
    return {"scheduler": scheduled, "worker": drain(ctx, on_result=results.append)}


def queued_messages(ctx, name=None) -> list:
    return list(ctx.storage.queue(name).peek_messages(max_messages=32))


# ------------------------------------------------------------------ the invariant


def selection_recorded(ctx, integration_id: str, window_start: int) -> Selection:
    """The selection the window's run record fixed, a typed file's parameter types included: what a replay exports."""
    record = ctx.runs.get(ACCOUNT, integration_id, window_start)
    assert record is not None, "the window has a run record"
    return recorded_selection(record)


def read_ids(ctx, start, end, names) -> list[str]:
    return [
        i
        for batch in ctx.ucd.read_window(ACCOUNT, start, end, event_names=names)
        for i in batch.column("event_id").to_pylist()
    ]


def listing(store):
    """(names, read) of the customer's files: in an Azure container (a ContainerClient) or a destination kit."""
    if hasattr(store, "list_blobs"):
        return (lambda: [b.name for b in store.list_blobs()]), (lambda name: store.download_blob(name).readall())
    return store.names, store.read


def exported_files(ctx, container, integration) -> list[tuple[int, int, str]]:
    prefix = join_prefix(integration.destination.prefix, "")
    extension = re.escape(integration.format)
    pattern = re.compile(re.escape(prefix) + rf"{ACCOUNT}_events_{integration.id}_(\d+)_(\d+)\.{extension}")
    files = []
    names, _read = listing(container)
    for name in names():
        found = pattern.fullmatch(name)
        assert found, f"unexpected blob in the customer's container: {name}"
        files.append((int(found[1]), int(found[2]), name))
    return sorted(files)


def file_ids(file_format: str, data: bytes, header: list[str]) -> tuple[list[str], bytes]:
    """The event ids of a file of a row format, in order, and its text (decompressed)."""
    text = gzip.decompress(data) if file_format.endswith(".gz") else data
    if file_format == "jsonl.gz":
        return [json.loads(line)["event_id"] for line in text.splitlines()], text
    rows = list(csv.reader(io.StringIO(text.decode("utf-8"), newline="")))
    assert rows[0] == header
    return [r[0] for r in rows[1:]], text


def assert_exactly_once(
    ctx, container, integration_id: str, *, up_to_date: bool = True
) -> dict[tuple[int, int], bytes]:
    """docs/invariants.md (exactly once, windows, catch-up, files) against the stored events, the customer's
    container or bucket, the run records and the state."""
    integration = ctx.repo.get(ACCOUNT, integration_id)
    names = [e.name for e in integration.events]
    plan = column_plan(integration.events, integration.attributes)
    header = ("".join(f'"{h}",' for h in plan.header)[:-1] + "\r\n").encode()
    activated, last = integration.activated_at, integration.last_success_end
    assert last is not None, "nothing was delivered"
    files = exported_files(ctx, container, integration)

    # Windows: one file per window, from activation to last_success_end, contiguous, frequency long, named by bounds.
    assert files, "no files"
    assert files[0][0] == int(activated.timestamp()), "the first window starts at activation"
    assert files[-1][1] == int(last.timestamp()), "the last file ends at last_success_end"
    for (_s1, e1, _), (s2, _e2, _) in zip(files, files[1:]):
        assert s2 == e1, f"gap or overlap between windows ending {e1} and starting {s2}"
    length = integration.frequency_hours * 3600
    for start, end, name in files:
        assert end - start == length
        assert name == window_path(
            integration.destination.prefix,
            ACCOUNT,
            integration.id,
            Window(from_unix(start), from_unix(end)),
            integration.format,
        )

    # Each file holds exactly the stored rows of its window; empty windows are header only (JSON Lines: nothing).
    exported: Counter[str] = Counter()
    contents = {}
    _names, read = listing(container)
    for start, end, name in files:
        data = read(name)
        contents[(start, end)] = data
        ids, text = file_ids(integration.format, data, plan.header)
        expected = read_ids(ctx, from_unix(start), from_unix(end), names)
        assert sorted(ids) == sorted(expected), f"file {name} does not hold exactly its window's rows"
        assert len(ids) == len(set(ids)), f"duplicate row in {name}"
        if not expected:
            assert text == (b"" if integration.format == "jsonl.gz" else header), f"empty window {name} has rows"
        exported.update(ids)
        record = ctx.runs.get(ACCOUNT, integration.id, start)
        assert record is not None and record.status == RunStatus.EXPORTED, (name, record)
        assert (record.window_end, record.file, record.rows, record.bytes) == (end, name, len(ids), len(data))

    # Exactly once: every stored event of a selected type since activation is in exactly one file.
    duplicated = {i: n for i, n in exported.items() if n != 1}
    assert not duplicated, f"events exported more than once: {duplicated}"
    delivered = set(read_ids(ctx, activated, last, names))
    assert set(exported) == delivered
    before = set(read_ids(ctx, activated - timedelta(days=1), activated, names))
    assert before, "the scenario stores events before activation"
    assert not before & set(exported), "nothing before activation is exported"
    if up_to_date:
        everything = set(read_ids(ctx, activated, ctx.clock.now() + timedelta(days=1), names))
        assert everything == set(exported), "a stored event of a selected type was not exported"
        assert not is_due(activated, last, integration.frequency_hours, ctx.clock.now(), ctx.settings.settle_seconds)
    assert integration.status == Status.ACTIVE
    pending_uploads = getattr(container, "pending_uploads", None)  # an S3 kit
    if pending_uploads is not None:
        assert pending_uploads() == [], "every multipart upload was completed or aborted"
    return contents


# ------------------------------------------------------------------ destinations that fail on purpose


class FlakyDestination:
    """The real destination, but staging or committing raises TransientError the first `failures` times."""

    def __init__(self, inner, state):
        self.inner, self.state = inner, state

    @property
    def prefix(self):
        return self.inner.prefix

    def describe(self):
        return self.inner.describe()

    def verify(self, name):
        return self.inner.verify(name)

    def _maybe_fail(self, operation):
        with self.state["lock"]:
            self.state["calls"].append(operation)
            if self.state["failures"] > 0:
                self.state["failures"] -= 1
                raise TransientError("the storage service is unavailable or throttling (503 ServerBusy)")

    def stage_block(self, path, index, data):
        self._maybe_fail("stage")
        return self.inner.stage_block(path, index, data)

    def resume_upload(self, path, state, staged):
        self.inner.resume_upload(path, state, staged)

    def commit_blocks(self, path, count):
        self._maybe_fail("commit")
        self.inner.commit_blocks(path, count)

    def abandon_blocks(self, path):
        self.inner.abandon_blocks(path)


def flaky(ctx, monkeypatch, failures):
    state = {"failures": failures, "calls": [], "lock": threading.Lock()}
    monkeypatch.setattr(ctx, "open_destination", lambda *a: FlakyDestination(real_open_destination(*a), state))
    return state


class ExpiringDestination:
    """The real destination until `good_commits` files are committed; from then on the real destination
    built with refused credentials (a wrong account key or secret key, or a service-account key whose
    token request is refused), so the server refuses for real and the app classifies it."""

    def __init__(self, good, bad, state):
        self.good, self.bad, self.state = good, bad, state

    def _target(self):
        return self.bad if self.state["expired"] else self.good

    @property
    def prefix(self):
        return self.good.prefix

    def describe(self):
        return self._target().describe()

    def verify(self, name):
        return self._target().verify(name)

    def stage_block(self, path, index, data):
        target = self._target()
        if target is self.bad:
            self.state["refused"].append(path)
        return target.stage_block(path, index, data)

    def resume_upload(self, path, state, staged):
        self._target().resume_upload(path, state, staged)

    def commit_blocks(self, path, count):
        target = self._target()
        if target is self.bad:
            self.state["refused"].append(path)
        target.commit_blocks(path, count)
        self.state["committed"].append(path)
        if len(self.state["committed"]) >= self.state["good_commits"]:
            self.state["expired"] = True

    def abandon_blocks(self, path):
        self._target().abandon_blocks(path)


class FileBytes:
    """A write-only file that keeps what is written (a whole small file, for tests)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    @property
    def bytes_written(self) -> int:
        return len(self.data)

    def write(self, data) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


def write_csv(batches, plan: ColumnPlan, sink: Writable) -> int:
    """A whole CSV file through the export's own row writer (`CsvRows`): the header, each batch projected."""
    rows = 0
    writer = CsvRows(plan, column_types(plan, {}), sink, True)
    for batch in batches:
        writer.write(plan.project(batch))
        rows += batch.num_rows
    writer.close()
    return rows
