"""The export engine under faults, once per destination type (Azure Blob on Azurite, S3 on moto, GCS on
gcp-storage-emulator): crash after commit, crash before state, duplicate delivery, two workers,
transient failures, credentials expiring during a catch-up.

Every scenario ends with `assert_exactly_once` (docs/invariants.md against what the destination
really holds; for S3 also: no multipart upload left pending).
"""

from __future__ import annotations

import threading

import pytest

from exporter.clock import iso
from exporter.context import Context
from exporter.destinations import open_destination as real_open_destination
from exporter.errors import CredentialError, TransientError
from exporter.export.naming import window_path
from exporter.export.runner import export_window
from exporter.integrations.model import Status
from exporter.jobs import ExportJob, process_job, schedule, worker
from exporter.local.host import drain, tick
from exporter.runs import EXPORTED, FAILED, RETRYING
from exporter.windows import Window
from tests.destination_helpers import assert_bytes_match_a_clean_export, create, destination_from_body
from tests.export_helpers import (
    ACCOUNT,
    ACT,
    ExpiringDestination,
    H,
    assert_exactly_once,
    deliver_one,
    due_at,
    flaky,
    populate,
)
from tests.helpers import call, run_together

# ------------------------------------------------------------------ (a) crash after commit, before run record


@pytest.mark.parametrize("crash_point", ["run_record", "export_returned"])
def test_a_worker_dying_after_the_commit_is_redelivered_exactly_once(ctx, clock, kit, monkeypatch, crash_point):
    iid = create(ctx, clock, kit)
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

        monkeypatch.setattr(worker, "export_window", dying_export)

    with pytest.raises(Exception):  # noqa: B017 - the worker dies (however the failure is wrapped)
        deliver_one(ctx)
    first = Window(ACT, ACT + H)
    name = window_path("insider/", ACCOUNT, iid, first)
    assert died == [name]
    assert kit.names() == [name], "the file was committed before the crash"
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None, "state did not move"

    worked = drain(ctx)  # redelivery
    assert worked["jobs"] == 1 and worked["windows_exported"] == 3
    assert len(assert_exactly_once(ctx, kit, iid)) == 3


# ------------------------------------------------------------------ (b) crash after the run record, before advancing


def test_a_worker_dying_before_advancing_is_redelivered_exactly_once(ctx, clock, kit, monkeypatch):
    iid = create(ctx, clock, kit)
    populate(ctx, clock, range(3))
    clock.set(due_at(3))
    schedule(ctx)
    real_advance = worker._advance
    failures = []

    def advance_once_fails(*args, **kwargs):
        if not failures:
            failures.append(args[2])
            raise RuntimeError("worker killed before advancing")
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(worker, "_advance", advance_once_fails)

    with pytest.raises(RuntimeError):
        deliver_one(ctx)
    assert ctx.runs.get(ACCOUNT, iid, failures[0].start_unix).status == EXPORTED
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None

    assert drain(ctx)["windows_exported"] == 3, "window 1 again under the same name, then 2 and 3"
    assert len(assert_exactly_once(ctx, kit, iid)) == 3
    assert ctx.runs.get(ACCOUNT, iid, failures[0].start_unix).attempts == 2


# ------------------------------------------------------------------ (c) the same message delivered twice


def test_the_same_message_queued_twice_exports_each_window_once(ctx, clock, kit, scratch_kit):
    iid = create(ctx, clock, kit)
    populate(ctx, clock, range(3), skip={2})
    clock.set(due_at(3))
    assert schedule(ctx)["queued"] == 1
    ctx.storage.queue().send_message(ExportJob(ACCOUNT, iid).to_message())  # at-least-once: a duplicate
    results = []
    assert drain(ctx, on_result=results.append)["jobs"] == 2
    assert sorted(r.exported for r in results) == [0, 3]
    contents = assert_exactly_once(ctx, kit, iid)
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)


def test_a_duplicate_delivery_overlapping_the_first_rewrites_identical_bytes(ctx, clock, kit, scratch_kit, monkeypatch):
    """The duplicate runs to completion between the first delivery's commit and its advance."""
    iid = create(ctx, clock, kit)
    populate(ctx, clock, range(3), skip={1})
    clock.set(due_at(3))
    body = ExportJob(ACCOUNT, iid).to_message()
    real_advance = worker._advance
    inner = []

    def advance_after_a_duplicate(*args, **kwargs):
        if not inner:
            inner.append(None)
            inner[0] = process_job(ctx, body, 1)
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(worker, "_advance", advance_after_a_duplicate)

    outer = process_job(ctx, body, 1)
    assert inner[0].exported == 3
    assert outer.stopped is None and ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + 3 * H
    contents = assert_exactly_once(ctx, kit, iid)
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)


# ------------------------------------------------------------------ (d) two workers at once


@pytest.mark.parametrize("meet_at_advance", [False, True])
def test_two_workers_at_once_export_each_window_once(
    ctx, settings, clock, kit, scratch_kit, monkeypatch, meet_at_advance
):
    iid = create(ctx, clock, kit)
    populate(ctx, clock, range(4), skip={2})
    clock.set(due_at(4))
    body = ExportJob(ACCOUNT, iid).to_message()
    workers = [Context.create(settings, clock), Context.create(settings, clock)]
    if meet_at_advance:
        # Both workers commit window 1 (two uploads of one name) and only then race on the ETag-guarded advance.
        meet = threading.Barrier(2, timeout=60)
        real_advance = worker._advance
        calls, lock = [], threading.Lock()

        def advance_together(*args, **kwargs):
            with lock:
                calls.append(args[2])
                wait = len(calls) <= 2
            if wait:
                meet.wait()
            return real_advance(*args, **kwargs)

        monkeypatch.setattr(worker, "_advance", advance_together)

    results = run_together(lambda i: process_job(workers[i], body, 1), 2)
    if meet_at_advance:
        assert calls[:2] == [Window(ACT, ACT + H)] * 2
    assert sum(r.exported for r in results) >= 4
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + 4 * H
    contents = assert_exactly_once(ctx, kit, iid)
    assert len(contents) == 4
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)


# ------------------------------------------------------------------ (e) transient destination failures


def test_transient_failures_are_retried_by_redelivery_and_never_flip_the_status(ctx, clock, kit, monkeypatch):
    iid = create(ctx, clock, kit)
    populate(ctx, clock, range(2))
    clock.set(due_at(2))
    state = flaky(ctx, monkeypatch, failures=2)
    schedule(ctx)

    with pytest.raises(TransientError):
        deliver_one(ctx)
    first = Window(ACT, ACT + H)
    record = ctx.runs.get(ACCOUNT, iid, first.start_unix)
    assert (record.status, record.attempts) == (RETRYING, 1)
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.ACTIVE and integration.last_success_end is None
    assert kit.names() == [], "nothing is visible before the commit"

    worked = drain(ctx)
    assert worked["failed_deliveries"] == 1 and worked["jobs"] == 1 and worked["poisoned"] == 0
    assert (ctx.runs.get(ACCOUNT, iid, first.start_unix).status, state["failures"]) == (EXPORTED, 0)
    assert_exactly_once(ctx, kit, iid)


# ------------------------------------------------------------------ (f) credentials expire during a catch-up


def test_credentials_expiring_during_a_catch_up_stop_at_once_and_resume_after_an_update(ctx, clock, kit, monkeypatch):
    iid = create(ctx, clock, kit)
    populate(ctx, clock, range(5), skip={3})
    clock.set(due_at(5))  # five windows behind
    state = {"expired": False, "good_commits": 2, "committed": [], "refused": []}

    def expiring(kind, secret, container, prefix):
        return ExpiringDestination(
            real_open_destination(kind, secret, container, prefix),
            destination_from_body(kit.refused_body(prefix)),
            state,
        )

    monkeypatch.setattr(ctx, "open_destination", expiring)

    results = []
    assert tick(ctx)["worker"]["windows_exported"] == 2
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.CREDENTIAL_ERROR
    assert kit.refusal_words in integration.last_error
    assert integration.last_success_end == ACT + 2 * H, "nothing after the refusal counts"
    third = Window(ACT + 2 * H, ACT + 3 * H)
    assert set(state["refused"]) == {window_path("insider/", ACCOUNT, iid, third)}, "no further window was attempted"
    assert len(kit.names()) == 2
    record = ctx.runs.get(ACCOUNT, iid, third.start_unix)
    assert record.status == FAILED and kit.refusal_words in record.error
    for secret in kit.secrets().values():
        assert secret not in integration.last_error and secret not in record.error

    # While stopped: nothing is delivered and only verified credentials resume it.
    clock.advance(hours=1)
    assert tick(ctx)["scheduler"]["queued"] == 0
    assert process_job(ctx, ExportJob(ACCOUNT, iid).to_message()).exported == 0
    assert call(ctx, "integrations_resume", account=ACCOUNT, id=iid).status == 409
    refused = call(
        ctx,
        "integrations_update",
        {
            "destination": {
                k: v for k, v in kit.refused_body().items() if k not in ("type", "bucket", "container", "prefix")
            }
        },
        account=ACCOUNT,
        id=iid,
    )
    assert refused.status == 422 and refused.body["error"]["code"] == CredentialError.code
    assert ctx.repo.get(ACCOUNT, iid).status == Status.CREDENTIAL_ERROR

    state.update(expired=False, good_commits=10**6)
    updated = call(ctx, "integrations_update", {"destination": kit.credentials_update()}, account=ACCOUNT, id=iid)
    assert updated.status == 200, updated.body
    assert updated.body["status"] == Status.ACTIVE and updated.body["last_error"] is None
    assert updated.body["last_success_end"] == iso(ACT + 2 * H)
    worked = drain(ctx, on_result=results.append) if schedule(ctx)["queued"] else {"windows_exported": 0}
    assert worked["windows_exported"] == 4  # windows 3, 4, 5 and the one that came due meanwhile
    starts = [w.window_start for r in results for w in r.windows]
    assert starts == [int((ACT + k * H).timestamp()) for k in range(2, 6)], "oldest first, from last_success_end"
    assert_exactly_once(ctx, kit, iid)
