"""A worker dying between committing a window's file, recording its run and advancing its state: the
redelivery exports each window exactly once (docs/invariants.md), in every destination type."""

from __future__ import annotations

import pytest

from exporter.export.naming import window_path
from exporter.export.runner import export_window
from exporter.jobs import attempt, schedule, state
from exporter.local.host import drain
from exporter.runs import RunStatus
from exporter.windows import Window
from tests.destination_helpers import behind
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once, deliver_one

# ------------------------------------------------------------------ crash after commit, before run record


def die_at_the_run_record(ctx, monkeypatch, died: list[str]) -> None:
    """The worker dies writing the window's `exported` record, after the commit."""
    real_put = ctx.runs.put

    def dying_put(record):
        if record.status == RunStatus.EXPORTED and not died:
            died.append(record.file)
            raise RuntimeError("worker killed")
        real_put(record)

    monkeypatch.setattr(ctx.runs, "put", dying_put)


def die_when_the_export_returns(ctx, monkeypatch, died: list[str]) -> None:
    """The worker dies as soon as the window's export has committed its file."""

    def dying_export(*args, **kwargs):
        result = export_window(*args, **kwargs)
        if not died:
            died.append(result.path)
            raise RuntimeError("worker killed")
        return result

    monkeypatch.setattr(attempt, "export_window", dying_export)


@pytest.mark.parametrize("die", [die_at_the_run_record, die_when_the_export_returns])
def test_a_worker_dying_after_the_commit_and_before_the_run_record_is_redelivered_exactly_once(
    ctx, clock, kit, monkeypatch, die
):
    iid = behind(ctx, clock, kit, 3, skip={1})
    assert schedule(ctx).queued == 1
    died: list[str] = []
    die(ctx, monkeypatch, died)

    with pytest.raises(Exception):  # noqa: B017 - the worker dies (however the failure is wrapped)
        deliver_one(ctx)
    first = Window(ACT, ACT + H)
    name = window_path("insider/", ACCOUNT, iid, first)
    assert died == [name]
    assert kit.names() == [name], "the file was committed before the crash"
    record = ctx.runs.get(ACCOUNT, iid, first.start_unix)
    assert record is None or record.status != RunStatus.EXPORTED
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None, "state did not move"

    worked = drain(ctx)  # redelivery
    assert worked["jobs"] == 1 and worked["windows_exported"] == 3
    assert len(assert_exactly_once(ctx, kit, iid)) == 3
    assert ctx.runs.get(ACCOUNT, iid, first.start_unix).attempts == (2 if record else 1)


# ------------------------------------------------------------------ crash after run record, before advancing


def test_a_worker_dying_after_the_run_record_and_before_advancing_is_redelivered_exactly_once(
    ctx, clock, kit, monkeypatch
):
    iid = behind(ctx, clock, kit, 3)
    schedule(ctx)
    real_advance = state.advance
    failures = []

    def advance_once_fails(*args, **kwargs):
        if not failures:
            failures.append(args[2])
            raise RuntimeError("worker killed before advancing")
        return real_advance(*args, **kwargs)

    monkeypatch.setattr(state, "advance", advance_once_fails)

    with pytest.raises(RuntimeError):
        deliver_one(ctx)
    first = failures[0]
    assert first == Window(ACT, ACT + H)
    assert ctx.runs.get(ACCOUNT, iid, first.start_unix).status == RunStatus.EXPORTED
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None

    worked = drain(ctx)
    assert worked["windows_exported"] == 3, "the redelivery re-exports window 1 under the same name, then 2 and 3"
    assert len(assert_exactly_once(ctx, kit, iid)) == 3
    assert ctx.runs.get(ACCOUNT, iid, first.start_unix).attempts == 2
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None, "the lease is released when up to date"
