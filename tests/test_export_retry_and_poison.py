"""Transient destination failures are retried by redelivery and never flip the status; a job failing
on every delivery is poisoned, recorded in the run history, and scheduled again."""
from __future__ import annotations

import pytest

from exporter.errors import TransientError
from exporter.jobs import schedule
from exporter.local.host import drain
from exporter.runs import EXPORTED, POISONED, RETRYING
from exporter.windows import Window
from tests.export_helpers import (
    ACCOUNT,
    ACT,
    H,
    assert_exactly_once,
    create,
    deliver_one,
    due_at,
    flaky,
    populate,
    queued_messages,
)
from tests.helpers import call


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
