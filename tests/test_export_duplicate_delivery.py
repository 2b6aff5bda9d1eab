"""The same job delivered twice, overlapping, or to two workers at once: each window is exported once,
and every rewrite has the same bytes as a clean export, in every destination type."""

from __future__ import annotations

import threading

import pytest

from exporter.context import Context
from exporter.errors import TransientError
from exporter.jobs import ExportJob, failures, process_job, schedule, state
from exporter.local.host import drain
from exporter.runs import RunRecord, RunStatus
from exporter.windows import Window
from tests.destination_helpers import assert_bytes_match_a_clean_export, behind
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once
from tests.helpers import run_together

# ------------------------------------------------------------------ the same message delivered twice


def test_the_same_message_queued_twice_exports_each_window_once(ctx, clock, kit, scratch_kit):
    iid = behind(ctx, clock, kit, 3, skip={2})
    assert schedule(ctx).queued == 1
    ctx.storage.queue().send_message(ExportJob(ACCOUNT, iid).to_message())  # at-least-once: a duplicate
    results = []
    assert drain(ctx, on_result=results.append)["jobs"] == 2
    assert sorted(r.exported for r in results) == [0, 3]
    contents = assert_exactly_once(ctx, kit, iid)
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)


def test_a_duplicate_delivery_overlapping_the_first_rewrites_identical_bytes(ctx, clock, kit, scratch_kit, monkeypatch):
    """The duplicate runs to completion between the first delivery's commit and its advance."""
    iid = behind(ctx, clock, kit, 3, skip={1})
    body = ExportJob(ACCOUNT, iid).to_message()
    real_advance = state.advance
    inner = []

    def advance_after_a_duplicate(*args, **kwargs):
        if not inner:
            inner.append(None)
            inner[0] = process_job(ctx, body, 1)  # the same message, delivered again meanwhile
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(state, "advance", advance_after_a_duplicate)

    outer = process_job(ctx, body, 1)
    assert inner[0].exported == 3
    assert outer.stopped is None and ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + 3 * H
    contents = assert_exactly_once(ctx, kit, iid)
    assert len(contents) == 3
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)


# ------------------------------------------------------------------ two workers at once


def meet_at_the_advance(monkeypatch) -> list[Window]:
    """Both workers commit window 1 (two uploads of one name) and only then race on the ETag-guarded advance."""
    meet = threading.Barrier(2, timeout=60)
    real_advance = state.advance
    calls, lock = [], threading.Lock()

    def advance_together(*args, **kwargs):
        with lock:
            calls.append(args[2])
            wait = len(calls) <= 2
        if wait:
            meet.wait()
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(state, "advance", advance_together)
    return calls


def as_the_host(ctx, body: str, deliveries: int = 3):
    """Run a job as the Functions host does: a delivery that failed transiently is delivered again.

    Two workers on one window can meet on one upload (the second resumes the first's recorded
    progress); one of them may then fail transiently, e.g. GCS ends a session the other finalized.
    """
    for count in range(1, deliveries + 1):
        try:
            return process_job(ctx, body, count)
        except TransientError:
            if count == deliveries:
                raise
    raise AssertionError("unreachable")


@pytest.mark.parametrize("meet_at_advance", [False, True])
def test_two_workers_on_the_same_integration_at_once_export_each_window_once(
    ctx, settings, clock, kit, scratch_kit, monkeypatch, meet_at_advance
):
    iid = behind(ctx, clock, kit, 4, skip={2})
    body = ExportJob(ACCOUNT, iid).to_message()
    workers = [Context.create(settings, clock), Context.create(settings, clock)]
    calls = meet_at_the_advance(monkeypatch) if meet_at_advance else None

    results = run_together(lambda i: as_the_host(workers[i], body), 2)
    if calls is not None:
        assert calls[:2] == [Window(ACT, ACT + H)] * 2, "both workers exported window 1 before either advanced"
    assert sum(r.exported for r in results) >= 4
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + 4 * H
    contents = assert_exactly_once(ctx, kit, iid)
    assert len(contents) == 4
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)


def _failed(ctx, window: Window) -> None:
    """A worker's attempt at `window` fails transiently and is recorded as the worker records it."""
    attempt = RunRecord.of_window(ACCOUNT, "i1", window, "f.csv", status=RunStatus.EXPORTING, attempts=2)
    fault = TransientError("the resumable upload session expired or was cancelled")
    failures.record_failure(ctx, attempt, fault, fault, {})


def test_a_failure_after_another_worker_delivered_the_window_leaves_its_record_exported(ctx, monkeypatch):
    delivered, open_window = Window(ACT, ACT + H), Window(ACT + H, ACT + 2 * H)
    ctx.runs.put(RunRecord.of_window(ACCOUNT, "i1", delivered, "f.csv", status=RunStatus.EXPORTED, rows=3))
    ctx.runs.put(RunRecord.of_window(ACCOUNT, "i1", open_window, "g.csv", status=RunStatus.EXPORTING))

    _failed(ctx, delivered)
    _failed(ctx, open_window)

    assert ctx.runs.get(ACCOUNT, "i1", delivered.start_unix).status == RunStatus.EXPORTED
    assert ctx.runs.get(ACCOUNT, "i1", delivered.start_unix).rows == 3
    assert ctx.runs.get(ACCOUNT, "i1", open_window.start_unix).status == RunStatus.RETRYING


def test_a_delivery_recorded_while_a_failure_is_being_recorded_wins(ctx, monkeypatch):
    window = Window(ACT, ACT + H)
    ctx.runs.put(RunRecord.of_window(ACCOUNT, "i1", window, "f.csv", status=RunStatus.EXPORTING))
    table = ctx.runs.table
    real_update = table.update_entity

    def the_other_worker_delivers_first(*args, **kwargs):
        monkeypatch.setattr(table, "update_entity", real_update)
        ctx.runs.put(RunRecord.of_window(ACCOUNT, "i1", window, "f.csv", status=RunStatus.EXPORTED, rows=3))
        return real_update(*args, **kwargs)  # its ETag is now stale

    monkeypatch.setattr(table, "update_entity", the_other_worker_delivers_first)
    _failed(ctx, window)

    assert ctx.runs.get(ACCOUNT, "i1", window.start_unix).status == RunStatus.EXPORTED
