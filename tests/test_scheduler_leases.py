"""The scheduler's lease: one job per integration until the lease expires or the worker frees it
(a follow-up holds it; a pause during a run releases it at once). The destination plays no part in
leases: Azure only (`azure_kit`)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from exporter.clock import iso
from exporter.context import Context
from exporter.integrations.due import DueEntry
from exporter.jobs import schedule, state
from exporter.local.host import drain
from tests.destination_helpers import behind
from tests.export_helpers import ACCOUNT, assert_exactly_once, deliver_one, due_at, queued_messages
from tests.helpers import call


def test_a_follow_up_holds_the_lease_so_the_scheduler_does_not_queue_a_second_job(settings, clock, azure_kit):
    ctx = Context.create(dataclasses.replace(settings, max_windows_per_run=2), clock)
    iid = behind(ctx, clock, azure_kit, 5)
    assert schedule(ctx).queued == 1
    assert deliver_one(ctx).follow_up is True
    assert len(queued_messages(ctx)) == 1, "the follow-up message"
    clock.advance(seconds=30)
    again = schedule(ctx)
    assert (again.queued, again.integrations) == (0, []), "its due entry waits at the follow-up's lease end"
    assert len(queued_messages(ctx)) == 1
    drain(ctx)
    assert_exactly_once(ctx, azure_kit, iid)


# ------------------------------------------------------------------ the scheduler does not flood


def test_the_scheduler_queues_once_per_lease_and_again_after_the_lease_expires(ctx, settings, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 1)
    first = schedule(ctx)
    assert first.to_json() == {
        "queued": 1,
        "already_queued": 0,
        "windows_due": 1,
        "integrations": [iid],
        "now": iso(due_at(1)),
    }, "the JSON form keeps every key"
    clock.advance(seconds=20)  # the same minute: the timer fired twice
    second = schedule(ctx)
    assert (second.queued, second.already_queued) == (0, 1)
    assert len(queued_messages(ctx)) == 1
    [entry] = [e for e in ctx.repo.due.all() if isinstance(e, DueEntry)]
    lease = entry.leased_until  # the lease lives on the due entry until the worker's first write
    assert lease == due_at(1) + timedelta(seconds=settings.lease_seconds)

    clock.set(lease - timedelta(seconds=1))
    assert schedule(ctx).queued == 0, "not before the lease expires"
    clock.set(lease)  # no worker took it (say the instance died): queued again
    assert schedule(ctx).queued == 1
    assert len(queued_messages(ctx)) == 2

    results = []
    assert drain(ctx, on_result=results.append)["jobs"] == 2
    assert sorted(r.exported for r in results) == [0, 1]
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None
    assert schedule(ctx).queued == 0, "up to date: nothing to queue"
    assert_exactly_once(ctx, azure_kit, iid)

    clock.set(due_at(2))
    assert schedule(ctx).queued == 1, "the next window is queued once it is due"
    drain(ctx)
    contents = assert_exactly_once(ctx, azure_kit, iid)
    assert len(contents) == 2 and contents[min(contents)] != contents[max(contents)]


def test_a_pause_during_a_run_frees_the_integration_for_the_scheduler_at_once(ctx, clock, azure_kit, monkeypatch):
    iid = behind(ctx, clock, azure_kit, 3)
    assert schedule(ctx).queued == 1
    real_advance = state.advance

    def pause_then_advance(ctx_, integration, window, *told):
        call(ctx_, "integrations_pause", account=ACCOUNT, id=iid)  # the customer pauses mid-run
        return real_advance(ctx_, ctx_.repo.get(ACCOUNT, iid), window, *told)

    monkeypatch.setattr(state, "advance", pause_then_advance)
    result = deliver_one(ctx)
    assert (result.exported, result.reason) == (1, "integration changed concurrently")
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None, "the lease is released, not left to expire"
    monkeypatch.setattr(state, "advance", real_advance)
    call(ctx, "integrations_resume", account=ACCOUNT, id=iid)
    assert schedule(ctx).queued == 1, "queued again on the next minute, not after the lease"
    drain(ctx)
    assert_exactly_once(ctx, azure_kit, iid)
