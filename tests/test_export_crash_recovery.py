"""A worker dying between committing a window's file and advancing its state: the redelivery exports
each window exactly once (docs/invariants.md)."""

from __future__ import annotations

import pytest

from exporter.export.naming import window_path
from exporter.export.runner import export_window
from exporter.jobs import schedule, worker
from exporter.local.host import drain
from exporter.runs import EXPORTED
from exporter.windows import Window
from tests.export_helpers import (
    ACCOUNT,
    ACT,
    H,
    assert_exactly_once,
    create,
    deliver_one,
    due_at,
    populate,
)

# ------------------------------------------------------------------ crash after commit, before run record


@pytest.mark.parametrize("crash_point", ["run_record", "export_returned"])
def test_a_worker_dying_after_the_commit_and_before_the_run_record_is_redelivered_exactly_once(
    ctx, clock, customer_container, azurite_connection, monkeypatch, crash_point
):
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

        monkeypatch.setattr(worker, "export_window", dying_export)

    with pytest.raises(Exception):  # noqa: B017 - the worker dies (however the failure is wrapped)
        deliver_one(ctx)
    first = Window(ACT, ACT + H)
    name = window_path("insider/", ACCOUNT, iid, first)
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


# ------------------------------------------------------------------ crash after run record, before advancing


def test_a_worker_dying_after_the_run_record_and_before_advancing_is_redelivered_exactly_once(
    ctx, clock, customer_container, azurite_connection, monkeypatch
):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
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
