"""The export engine under faults, on Azurite: crashes, redelivery, duplicates, two workers, transient
and credential failures, pauses, bounded catch-up and scheduler leases.

Every scenario ends with `assert_exactly_once`, which checks I1-I4 against what is really stored: each
stored event of a selected type (entry time at or after activation) is in exactly one exported file,
the files tile [activated_at, last_success_end) without gap or overlap, each file holds exactly the
rows of its window, and an empty window has a header-only file.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import re
import threading
from collections import Counter
from datetime import timedelta

import pytest

from exporter import jobs
from exporter.clock import from_unix, iso
from exporter.context import Context
from exporter.destinations import open_destination as real_open_destination
from exporter.destinations.azure_blob import AzureBlobDestination
from exporter.errors import CredentialError, TransientError
from exporter.export.plan import column_plan, file_name, join_prefix
from exporter.export.runner import export_window
from exporter.local.host import drain, tick
from exporter.jobs import ExportJob, process_job, schedule
from exporter.runs import EXPORTED, FAILED, POISONED, RETRYING
from exporter.windows import Window, is_due
from tests.conftest import T0, call, integration_body, run_together

ACCOUNT = "acme"
H = timedelta(hours=1)
SETTLE = timedelta(seconds=120)
ACT = T0 + timedelta(minutes=17, seconds=23)  # activation off the clock hour
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="

_seq = itertools.count()


# ------------------------------------------------------------------ data and setup


def upsert(ctx, users: int = 2) -> int:
    """Store 3 events per user (two selected types, one not) plus an anonymous user's event."""
    k = next(_seq)
    when = lambda i, j: iso(T0 - timedelta(days=3) + timedelta(seconds=k * 10 + i, milliseconds=j))  # noqa: E731
    body = {"users": [
        {"user_id": f"u{i}", "attributes": {"email": f"u{i}@example.com"}, "events": [
            {"event_name": "purchase", "timestamp": when(i, 1), "event_params": {"price": k + i / 2, "currency": 'EUR, "x"'}},
            {"event_name": "email_open", "timestamp": when(i, 2), "event_params": {"campaign": f"c{k}"}},
            {"event_name": "page_view", "timestamp": when(i, 3)},
        ]}
        for i in range(users)
    ] + [{"user_id": f"anon-{k}", "events": [{"event_name": "email_open", "timestamp": when(9, 4)}]}]}
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


@pytest.fixture
def scratch_container(blob_service, tag):
    return blob_service.create_container(f"scratch-{tag}")


# ------------------------------------------------------------------ the invariant


def read_ids(ctx, start, end, names) -> list[str]:
    return [i for batch in ctx.ucd.read_window(ACCOUNT, start, end, event_names=names) for i in batch.column("event_id").to_pylist()]


def exported_files(ctx, container, integration) -> list[tuple[int, int, str]]:
    prefix = join_prefix(integration.destination.prefix, "")
    pattern = re.compile(re.escape(prefix) + rf"{ACCOUNT}_events_{integration.id}_(\d+)_(\d+)\.csv")
    files = []
    for blob in container.list_blobs():
        found = pattern.fullmatch(blob.name)
        assert found, f"unexpected blob in the customer's container: {blob.name}"
        files.append((int(found[1]), int(found[2]), blob.name))
    return sorted(files)


def assert_exactly_once(ctx, container, integration_id: str, *, up_to_date: bool = True) -> dict[tuple[int, int], bytes]:
    """I1-I4 against the stored events, the customer's container, the run records and the state."""
    integration = ctx.repo.get(ACCOUNT, integration_id)
    names = [e.name for e in integration.events]
    plan = column_plan(integration.events, integration.attributes)
    header = ("".join(f'"{h}",' for h in plan.header)[:-1] + "\r\n").encode()
    activated, last = integration.activated_at, integration.last_success_end
    assert last is not None, "nothing was delivered"
    files = exported_files(ctx, container, integration)

    # I2: one file per window, from activation to last_success_end, contiguous, frequency long, named by bounds.
    assert files, "no files"
    assert files[0][0] == int(activated.timestamp()), "the first window starts at activation"
    assert files[-1][1] == int(last.timestamp()), "the last file ends at last_success_end"
    for (s1, e1, _), (s2, _e2, _) in zip(files, files[1:]):
        assert s2 == e1, f"gap or overlap between windows ending {e1} and starting {s2}"
    length = integration.frequency_hours * 3600
    for start, end, name in files:
        assert end - start == length
        expected_name = join_prefix(integration.destination.prefix, file_name("", ACCOUNT, integration.id, Window(from_unix(start), from_unix(end))))
        assert name == expected_name

    # Each file holds exactly the stored rows of its window; empty windows are header only.
    exported: Counter[str] = Counter()
    contents = {}
    for start, end, name in files:
        data = container.download_blob(name).readall()
        contents[(start, end)] = data
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        assert rows[0] == plan.header
        ids = [r[0] for r in rows[1:]]
        expected = read_ids(ctx, from_unix(start), from_unix(end), names)
        assert sorted(ids) == sorted(expected), f"file {name} does not hold exactly its window's rows"
        assert len(ids) == len(set(ids)), f"duplicate row in {name}"
        if not expected:
            assert data == header, f"empty window {name} is not header only"
        exported.update(ids)
        record = ctx.runs.get(ACCOUNT, integration.id, start)
        assert record is not None and record.status == EXPORTED, (name, record)
        assert (record.window_end, record.file, record.rows, record.bytes) == (end, name, len(ids), len(data))

    # I1: every stored event of a selected type since activation is in exactly one file.
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
    assert integration.status == "active"
    return contents


def assert_bytes_match_a_clean_export(ctx, integration_id, contents, scratch, connection):
    """Re-export every window into a scratch container: each file must be byte-identical."""
    integration = ctx.repo.get(ACCOUNT, integration_id)
    clean = AzureBlobDestination(connection, scratch.container_name, integration.destination.prefix)
    for (start, end), data in contents.items():
        result = export_window(ctx.ucd, integration, Window(from_unix(start), from_unix(end)), clean)
        assert scratch.download_blob(result.path).readall() == data, f"window {start} differs from a clean export"


# ------------------------------------------------------------------ (a) crash after commit, before run record


@pytest.mark.parametrize("crash_point", ["run_record", "export_returned"])
def test_a_worker_dying_after_the_commit_and_before_the_run_record_is_redelivered_exactly_once(
        ctx, clock, customer_container, azurite_connection, monkeypatch, crash_point):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(3), skip={1})
    clock.set(due_at(3))
    assert schedule(ctx)["queued"] == 1

    died = []
    if crash_point == "run_record":
        real_put = ctx.runs.put

        def dying_put(record):
            if record.status == EXPORTED and not died:
                died.append(record.file)
                raise RuntimeError("worker killed")
            real_put(record)
        monkeypatch.setattr(ctx.runs, "put", dying_put)
    else:
        def dying_export(*args, **kwargs):
            result = export_window(*args, **kwargs)
            if not died:
                died.append(result.path)
                raise RuntimeError("worker killed")
            return result
        monkeypatch.setattr(jobs, "export_window", dying_export)

    with pytest.raises(Exception):  # noqa: B017 - the worker dies (however the failure is wrapped)
        deliver_one(ctx)
    first = Window(ACT, ACT + H)
    name = f"insider/{file_name('', ACCOUNT, iid, first)}"
    assert died == [name]
    assert [b.name for b in customer_container.list_blobs()] == [name], "the blob was committed before the crash"
    record = ctx.runs.get(ACCOUNT, iid, first.start_unix)
    assert record is None or record.status != EXPORTED
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None, "state did not move"

    worked = drain(ctx)  # redelivery
    assert worked["jobs"] == 1 and worked["windows_exported"] == 3
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert len(contents) == 3
    assert ctx.runs.get(ACCOUNT, iid, first.start_unix).attempts == (2 if record else 1)


# ------------------------------------------------------------------ (b) crash after run record, before advancing


def test_a_worker_dying_after_the_run_record_and_before_advancing_is_redelivered_exactly_once(
        ctx, clock, customer_container, azurite_connection, monkeypatch):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(3))
    clock.set(due_at(3))
    schedule(ctx)

    real_advance = jobs._advance
    failures = []

    def advance_once_fails(*args, **kwargs):
        if not failures:
            failures.append(args[2])
            raise RuntimeError("worker killed before advancing")
        return real_advance(*args, **kwargs)
    monkeypatch.setattr(jobs, "_advance", advance_once_fails)

    with pytest.raises(RuntimeError):
        deliver_one(ctx)
    first = failures[0]
    assert first == Window(ACT, ACT + H)
    assert ctx.runs.get(ACCOUNT, iid, first.start_unix).status == EXPORTED
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None

    worked = drain(ctx)
    assert worked["windows_exported"] == 3, "the redelivery re-exports window 1 under the same name, then 2 and 3"
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert len(contents) == 3
    assert ctx.runs.get(ACCOUNT, iid, first.start_unix).attempts == 2
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None, "the lease is released when up to date"


# ------------------------------------------------------------------ (c) the same message delivered twice


def test_the_same_message_queued_twice_exports_each_window_once(
        ctx, clock, customer_container, azurite_connection, scratch_container):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(3), skip={2})
    clock.set(due_at(3))
    assert schedule(ctx)["queued"] == 1
    ctx.storage.queue().send_message(ExportJob(ACCOUNT, iid).to_message())  # at-least-once: a duplicate
    results = []
    worked = drain(ctx, on_result=results.append)
    assert worked["jobs"] == 2
    assert sorted(r["exported"] for r in results) == [0, 3]
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_container, azurite_connection)


def test_a_duplicate_delivery_overlapping_the_first_rewrites_identical_bytes(
        ctx, clock, customer_container, azurite_connection, scratch_container, monkeypatch):
    """The duplicate runs to completion between the first delivery's commit and its advance."""
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(3), skip={1})
    clock.set(due_at(3))
    body = ExportJob(ACCOUNT, iid).to_message()

    real_advance = jobs._advance
    inner = []

    def advance_after_a_duplicate(*args, **kwargs):
        if not inner:
            inner.append(None)
            inner[0] = process_job(ctx, body, 1)  # the same message, delivered again meanwhile
        return real_advance(*args, **kwargs)
    monkeypatch.setattr(jobs, "_advance", advance_after_a_duplicate)

    outer = process_job(ctx, body, 1)
    assert inner[0]["exported"] == 3
    assert outer.get("stopped") is None and ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + 3 * H
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert len(contents) == 3
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_container, azurite_connection)


# ------------------------------------------------------------------ (d) two workers at once


@pytest.mark.parametrize("meet_at_advance", [False, True])
def test_two_workers_on_the_same_integration_at_once_export_each_window_once(
        ctx, settings, clock, customer_container, azurite_connection, scratch_container, monkeypatch, meet_at_advance):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(4), skip={2})
    clock.set(due_at(4))
    body = ExportJob(ACCOUNT, iid).to_message()
    workers = [Context.create(settings, clock), Context.create(settings, clock)]

    if meet_at_advance:
        # Both workers commit window 1 and only then race on the ETag-guarded advance.
        meet = threading.Barrier(2, timeout=60)
        real_advance = jobs._advance
        calls = []
        lock = threading.Lock()

        def advance_together(*args, **kwargs):
            with lock:
                calls.append(args[2])
                wait = len(calls) <= 2
            if wait:
                meet.wait()
            return real_advance(*args, **kwargs)
        monkeypatch.setattr(jobs, "_advance", advance_together)

    results = run_together(lambda i: process_job(workers[i], body, 1), 2)
    if meet_at_advance:
        assert calls[:2] == [Window(ACT, ACT + H)] * 2, "both workers exported window 1 before either advanced"
    assert sum(r["exported"] for r in results) >= 4
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + 4 * H
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert len(contents) == 4
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_container, azurite_connection)


# ------------------------------------------------------------------ (e) transient destination failures


class FlakyDestination:
    """The real destination, but staging or committing raises TransientError the first `failures` times."""

    def __init__(self, inner, state):
        self.inner, self.state = inner, state

    def path_for(self, name):
        return self.inner.path_for(name)

    def verify(self, name):
        return self.inner.verify(name)

    def _maybe_fail(self, operation):
        with self.state["lock"]:
            self.state["calls"].append(operation)
            if self.state["failures"] > 0:
                self.state["failures"] -= 1
                raise TransientError("the storage service is unavailable or throttling (503 ServerBusy)")

    def stage_block(self, path, block_id, data):
        self._maybe_fail("stage")
        self.inner.stage_block(path, block_id, data)

    def commit_blocks(self, path, block_ids):
        self._maybe_fail("commit")
        self.inner.commit_blocks(path, block_ids)


def flaky(ctx, monkeypatch, failures):
    state = {"failures": failures, "calls": [], "lock": threading.Lock()}
    monkeypatch.setattr(ctx, "open_destination", lambda *a: FlakyDestination(real_open_destination(*a), state))
    return state


def test_transient_destination_failures_are_retried_by_redelivery_and_never_flip_the_status(
        ctx, clock, customer_container, azurite_connection, monkeypatch):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(2))
    clock.set(due_at(2))
    state = flaky(ctx, monkeypatch, failures=2)
    schedule(ctx)

    with pytest.raises(TransientError):
        deliver_one(ctx)
    first = Window(ACT, ACT + H)
    record = ctx.runs.get(ACCOUNT, iid, first.start_unix)
    assert (record.status, record.attempts) == (RETRYING, 1)
    assert "unavailable" in record.error
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == "active" and integration.last_success_end is None
    assert list(customer_container.list_blobs()) == [], "nothing is visible before the commit"

    worked = drain(ctx)
    assert worked["failed_deliveries"] == 1 and worked["jobs"] == 1 and worked["poisoned"] == 0
    record = ctx.runs.get(ACCOUNT, iid, first.start_unix)
    assert (record.status, record.attempts, record.error) == (EXPORTED, 3, "")
    assert state["failures"] == 0
    assert_exactly_once(ctx, customer_container, iid)
    assert ctx.repo.get(ACCOUNT, iid).last_error is None


def test_a_job_failing_on_every_delivery_is_poisoned_then_rescheduled(
        ctx, settings, clock, customer_container, azurite_connection, monkeypatch):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(2))
    clock.set(due_at(2))
    state = flaky(ctx, monkeypatch, failures=6)
    assert schedule(ctx)["queued"] == 1

    worked = drain(ctx)
    assert worked == {"jobs": 0, "failed_deliveries": 5, "poisoned": 1, "windows_exported": 0}
    assert len(state["calls"]) == 5, "the 6th delivery goes to the poison queue without running"
    assert len(queued_messages(ctx, settings.poison_queue_name)) == 1
    assert queued_messages(ctx) == []
    first = Window(ACT, ACT + H)
    record = ctx.runs.get(ACCOUNT, iid, first.start_unix)
    assert (record.status, record.attempts) == (POISONED, 5)
    assert "gave up after 5 deliveries" in record.error
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == "active", "a transient failure never flips the status"
    assert integration.queued_until is None and integration.last_success_end is None
    assert "poison" in integration.last_error
    assert call(ctx, "integrations_runs", account=ACCOUNT, id=iid).body["runs"][0]["status"] == POISONED

    clock.advance(minutes=1)
    assert schedule(ctx)["queued"] == 1, "the next schedule queues it again"
    worked = drain(ctx)  # one more failure (the 6th), then the destination has recovered
    assert worked["jobs"] == 1 and worked["failed_deliveries"] == 1 and worked["windows_exported"] == 2
    record = ctx.runs.get(ACCOUNT, iid, first.start_unix)
    assert (record.status, record.attempts) == (EXPORTED, 7)
    assert_exactly_once(ctx, customer_container, iid)
    assert ctx.repo.get(ACCOUNT, iid).last_error is None


# ------------------------------------------------------------------ (f) credentials expire during a catch-up


class ExpiringDestination:
    """The real destination until `good_commits` files are committed; from then on the real destination
    built with a wrong account key, so Azurite refuses with a real 403 that the app classifies."""

    def __init__(self, good, bad, state):
        self.good, self.bad, self.state = good, bad, state

    def _target(self):
        return self.bad if self.state["expired"] else self.good

    def path_for(self, name):
        return self.good.path_for(name)

    def verify(self, name):
        return self._target().verify(name)

    def stage_block(self, path, block_id, data):
        target = self._target()
        if target is self.bad:
            self.state["refused"].append(path)
        target.stage_block(path, block_id, data)

    def commit_blocks(self, path, block_ids):
        target = self._target()
        if target is self.bad:
            self.state["refused"].append(path)
        target.commit_blocks(path, block_ids)
        self.state["committed"].append(path)
        if len(self.state["committed"]) >= self.state["good_commits"]:
            self.state["expired"] = True


def test_credentials_expiring_during_a_catch_up_stop_at_once_and_resume_after_an_update(
        ctx, clock, customer_container, azurite_connection, monkeypatch):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(5), skip={3})
    clock.set(due_at(5))  # five windows behind
    wrong = re.sub(r"AccountKey=[^;]+", f"AccountKey={WRONG_KEY}", azurite_connection)
    state = {"expired": False, "good_commits": 2, "committed": [], "refused": []}

    def expiring(kind, connection, container, prefix):
        return ExpiringDestination(real_open_destination(kind, connection, container, prefix),
                                   AzureBlobDestination(wrong, container, prefix), state)
    monkeypatch.setattr(ctx, "open_destination", expiring)

    results = []
    worked = tick_collecting(ctx, results)["worker"]
    assert worked["windows_exported"] == 2
    assert results[0]["stopped"] == CredentialError.code
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == "credential_error"
    assert "refused the credentials" in integration.last_error
    assert WRONG_KEY not in integration.last_error
    assert integration.last_success_end == ACT + 2 * H, "the lag remains: nothing after the refusal counts"
    assert integration.queued_until is None
    third = Window(ACT + 2 * H, ACT + 3 * H)
    assert set(state["refused"]) == {f"insider/{file_name('', ACCOUNT, iid, third)}"}, "no further window was attempted"
    assert len(list(customer_container.list_blobs())) == 2
    record = ctx.runs.get(ACCOUNT, iid, third.start_unix)
    assert record.status == FAILED and "refused the credentials" in record.error

    # While stopped: the scheduler skips it, and a stale message delivers nothing.
    refused_before = len(state["refused"])
    clock.advance(hours=1)
    assert tick(ctx)["scheduler"]["queued"] == 0
    assert process_job(ctx, ExportJob(ACCOUNT, iid).to_message())["exported"] == 0
    assert len(state["refused"]) == refused_before and len(state["committed"]) == 2
    assert call(ctx, "integrations_resume", account=ACCOUNT, id=iid).status == 409, "only verified credentials resume it"

    # The customer updates the credentials (verified) → active → the next tick catches up oldest first.
    state["expired"] = False
    state["good_commits"] = 10 ** 6
    updated = call(ctx, "integrations_update", {"destination": {"connection_string": azurite_connection}}, account=ACCOUNT, id=iid)
    assert updated.status == 200, updated.body
    assert updated.body["status"] == "active" and updated.body["last_error"] is None
    assert updated.body["last_success_end"] == iso(ACT + 2 * H)
    results.clear()
    worked = tick_collecting(ctx, results)["worker"]
    assert worked["windows_exported"] == 4  # windows 3, 4, 5 and the one that came due meanwhile
    starts = [w["window_start"] for r in results for w in r["windows"]]
    assert starts == [int((ACT + k * H).timestamp()) for k in range(2, 6)], "oldest first, from last_success_end"
    assert_exactly_once(ctx, customer_container, iid)


# ------------------------------------------------------------------ (g) pause, then resume


def test_pause_for_five_hours_then_resume_catches_up_one_file_per_window(
        ctx, clock, customer_container, azurite_connection):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(1))
    clock.set(due_at(1))
    assert tick(ctx)["worker"]["windows_exported"] == 1
    assert call(ctx, "integrations_pause", account=ACCOUNT, id=iid).body["status"] == "paused"

    populate(ctx, clock, range(1, 6), skip={4})  # events keep arriving while paused
    for hours in range(2, 7):
        clock.set(due_at(hours))
        assert tick(ctx)["scheduler"]["queued"] == 0, "paused integrations are skipped"
    assert process_job(ctx, ExportJob(ACCOUNT, iid).to_message())["exported"] == 0, "a stale message delivers nothing"
    assert len(list(customer_container.list_blobs())) == 1

    assert call(ctx, "integrations_resume", account=ACCOUNT, id=iid).body["status"] == "active"
    results = []
    assert tick_collecting(ctx, results)["worker"]["windows_exported"] == 5
    assert [w["window_start"] for w in results[0]["windows"]] == [int((ACT + k * H).timestamp()) for k in range(1, 6)]
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert len(contents) == 6
    assert ctx.repo.get(ACCOUNT, iid).activated_at == ACT, "resuming keeps the original anchor"


# ------------------------------------------------------------------ (h) bounded catch-up through follow-ups


def test_a_long_catch_up_is_bounded_per_invocation_and_continues_through_follow_up_messages(
        settings, clock, customer_container, azurite_connection):
    ctx = Context.create(dataclasses.replace(settings, max_windows_per_run=2), clock)
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(7), skip={0, 5})
    clock.set(due_at(7))
    results = []
    worked = tick_collecting(ctx, results)["worker"]
    assert [r["exported"] for r in results] == [2, 2, 2, 1]
    assert [r["follow_up"] for r in results] == [True, True, True, False]
    assert worked == {"jobs": 4, "failed_deliveries": 0, "poisoned": 0, "windows_exported": 7}
    starts = [w["window_start"] for r in results for w in r["windows"]]
    assert starts == [int((ACT + k * H).timestamp()) for k in range(7)]
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert len(contents) == 7
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None


def test_a_follow_up_holds_the_lease_so_the_scheduler_does_not_queue_a_second_job(
        settings, clock, customer_container, azurite_connection):
    ctx = Context.create(dataclasses.replace(settings, max_windows_per_run=2), clock)
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(5))
    clock.set(due_at(5))
    assert schedule(ctx)["queued"] == 1
    assert deliver_one(ctx)["follow_up"] is True
    assert len(queued_messages(ctx)) == 1, "the follow-up message"
    clock.advance(seconds=30)
    again = schedule(ctx)
    assert (again["queued"], again["already_queued"], again["integrations"]) == (0, 1, [])
    assert len(queued_messages(ctx)) == 1
    drain(ctx)
    assert_exactly_once(ctx, customer_container, iid)


# ------------------------------------------------------------------ (i) the scheduler does not flood


def test_the_scheduler_queues_once_per_lease_and_again_after_the_lease_expires(
        ctx, settings, clock, customer_container, azurite_connection):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(1))
    clock.set(due_at(1))
    assert schedule(ctx)["queued"] == 1
    clock.advance(seconds=20)  # the same minute: the timer fired twice
    second = schedule(ctx)
    assert (second["queued"], second["already_queued"]) == (0, 1)
    assert len(queued_messages(ctx)) == 1
    lease = ctx.repo.get(ACCOUNT, iid).queued_until
    assert lease == due_at(1) + timedelta(seconds=settings.lease_seconds)

    clock.set(lease - timedelta(seconds=1))
    assert schedule(ctx)["queued"] == 0, "not before the lease expires"
    clock.set(lease)  # no worker took it (say the instance died): queued again
    assert schedule(ctx)["queued"] == 1
    assert len(queued_messages(ctx)) == 2

    results = []
    assert drain(ctx, on_result=results.append)["jobs"] == 2
    assert sorted(r["exported"] for r in results) == [0, 1]
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None
    assert schedule(ctx)["queued"] == 0, "up to date: nothing to queue"
    assert_exactly_once(ctx, customer_container, iid)

    clock.set(due_at(2))
    assert schedule(ctx)["queued"] == 1, "the next window is queued once it is due"
    drain(ctx)
    contents = assert_exactly_once(ctx, customer_container, iid)
    assert len(contents) == 2 and contents[min(contents)] != contents[max(contents)]


def test_a_pause_during_a_run_frees_the_integration_for_the_scheduler_at_once(
        ctx, clock, customer_container, azurite_connection, monkeypatch):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(3))
    clock.set(due_at(3))
    assert schedule(ctx)["queued"] == 1
    real_advance = jobs._advance

    def pause_then_advance(ctx_, integration, window):
        call(ctx_, "integrations_pause", account=ACCOUNT, id=iid)  # the customer pauses mid-run
        return real_advance(ctx_, ctx_.repo.get(ACCOUNT, iid), window)

    monkeypatch.setattr(jobs, "_advance", pause_then_advance)
    result = deliver_one(ctx)
    assert result["exported"] == 1 and result["reason"] == "integration changed concurrently"
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None, "the lease is released, not left to expire"
    monkeypatch.setattr(jobs, "_advance", real_advance)
    call(ctx, "integrations_resume", account=ACCOUNT, id=iid)
    assert schedule(ctx)["queued"] == 1, "queued again on the next minute, not after the lease"
    drain(ctx)
    assert_exactly_once(ctx, customer_container, iid)
