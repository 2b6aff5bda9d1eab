"""The notification outbox (exporter/notifications/outbox.py): an event is written with the state change it tells,
so a process that dies right after that write loses no event: the sweep queues it again, and it arrives once.
And a stop's id names its write: a second stop at the same window is another event, a retry the same one."""

# ruff: noqa: F811 - the fixture `receiver` is imported from tests/test_delivery_notifications.py, then requested

from __future__ import annotations

import hashlib
import json

import pytest

from exporter.clock import to_unix
from exporter.integrations.model import Integration, Status
from exporter.jobs import schedule, sweep
from exporter.local.faultproxy import Rule
from exporter.local.host import drain, tick
from exporter.notifications.outbox import GRACE_SECONDS
from exporter.notifications.sender import drain_notifications
from tests.export_helpers import ACCOUNT, ACT, H
from tests.helpers import call, proxied_context, through
from tests.test_delivery_notifications import Receiver, notified, receiver, refusing  # noqa: F401

STOPPED, RECOVERED, DELIVERED = "export.integration.stopped", "export.integration.recovered", "export.window.delivered"


def dies_after_the_write(ctx, monkeypatch, landed) -> list[Integration]:
    """The process dies (an exception) right after the first write of the integration that `landed` recognises."""
    real = ctx.repo.replace
    died: list[Integration] = []

    def replace(integration, *args, **kwargs):
        stored = real(integration, *args, **kwargs)
        if not died and landed(stored):
            died.append(stored)
            raise RuntimeError("the process died right after the state write")
        return stored

    monkeypatch.setattr(ctx.repo, "replace", replace)
    return died


def of_type(receiver: Receiver, kind: str) -> list[dict]:
    return [e for e in receiver.delivered() if e["type"] == kind]


def told_after_the_sweep(ctx, clock, receiver: Receiver, kind: str) -> dict:
    """Nothing of `kind` arrived; the sweep (past the grace) queues it again; it arrives, once, and only once."""
    assert of_type(receiver, kind) == [], "lost without the outbox: the queueing after the write never ran"
    assert sweep(ctx).resent == 0, "not before the grace"
    clock.advance(seconds=GRACE_SECONDS + 1)
    assert sweep(ctx).resent == 1
    drain_notifications(ctx)
    [event] = of_type(receiver, kind)
    clock.advance(hours=2)
    assert sweep(ctx).resent == 0, "sent: its row is gone"
    tick(ctx)
    assert [e for e in of_type(receiver, kind) if e["id"] == event["id"]] == [event], "exactly one logical event"
    return event


def test_a_stop_whose_process_died_right_after_its_write_is_told_after_the_sweep(
    ctx, clock, azure_kit, receiver, monkeypatch
):
    iid, _secret = notified(ctx, clock, azure_kit, receiver, 1)
    refusing(ctx, azure_kit, monkeypatch)
    died = dies_after_the_write(ctx, monkeypatch, lambda i: i.status.stopped)
    tick(ctx)
    integration = ctx.repo.get(ACCOUNT, iid)
    assert died and integration.status == Status.CREDENTIAL_ERROR
    event = told_after_the_sweep(ctx, clock, receiver, STOPPED)
    assert event["data"]["reason"] == integration.last_error
    assert event["data"]["window"] == {"start": to_unix(ACT), "end": to_unix(ACT + H)}


def test_a_delivery_whose_process_died_right_after_the_advance_is_told_after_the_sweep(
    ctx, clock, azure_kit, receiver, monkeypatch
):
    iid, _secret = notified(ctx, clock, azure_kit, receiver, 1)
    died = dies_after_the_write(ctx, monkeypatch, lambda i: i.last_success_end == ACT + H)
    tick(ctx)
    assert died and ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    event = told_after_the_sweep(ctx, clock, receiver, DELIVERED)
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert event["id"] == f"{iid}-{to_unix(ACT)}-delivered"
    assert event["data"]["sha256"] == run.sha256 == hashlib.sha256(azure_kit.read(run.file)).hexdigest()


def test_a_recovery_whose_process_died_right_after_its_write_is_told_after_the_sweep(
    ctx, clock, azure_kit, receiver, monkeypatch
):
    iid, _secret = notified(ctx, clock, azure_kit, receiver, 1)
    state = refusing(ctx, azure_kit, monkeypatch)
    tick(ctx)
    assert len(of_type(receiver, STOPPED)) == 1
    state["expired"] = False
    died = dies_after_the_write(ctx, monkeypatch, lambda i: i.status == Status.ACTIVE)
    answer = call(ctx, "integrations_update", {"destination": azure_kit.credentials_update()}, account=ACCOUNT, id=iid)
    assert answer.status == 500 and died and ctx.repo.get(ACCOUNT, iid).status == Status.ACTIVE
    monkeypatch.setattr(ctx.repo, "replace", type(ctx.repo).replace.__get__(ctx.repo))
    event = told_after_the_sweep(ctx, clock, receiver, RECOVERED)
    assert event["data"]["window"]["start"] == to_unix(ACT)


def test_a_second_stop_at_the_same_window_is_another_event_and_retries_keep_each_ones_id(
    ctx, clock, azure_kit, receiver, monkeypatch
):
    iid, _secret = notified(ctx, clock, azure_kit, receiver, 1)
    state = refusing(ctx, azure_kit, monkeypatch)
    update = {"destination": azure_kit.credentials_update()}
    for _stop in range(2):  # stop, recover, stop again at the same window, recover again
        receiver.up = False
        state["expired"] = True
        tick(ctx)  # the window fails: stopped; its first send answered 500
        assert ctx.repo.get(ACCOUNT, iid).status == Status.CREDENTIAL_ERROR
        receiver.up = True
        clock.advance(minutes=1)
        assert drain_notifications(ctx) == {"sent": 1}, "the retry"
        state["expired"] = False
        assert call(ctx, "integrations_update", update, account=ACCOUNT, id=iid).status == 200
        assert drain_notifications(ctx) == {"sent": 1}
        clock.advance(minutes=1)
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None, "both stops at the first window"
    sent = [(headers["webhook-id"], json.loads(body)) for _status, headers, body in receiver.requests]
    stop_sends = [(i, e) for i, e in sent if e["type"] == STOPPED]
    assert len(stop_sends) == 4, "each stop: a failed send and its retry"
    assert stop_sends[0][0] == stop_sends[1][0] and stop_sends[2][0] == stop_sends[3][0], "a retry keeps the id"
    assert stop_sends[0][0] != stop_sends[2][0], "a second stop is another event"
    assert {e["data"]["window"]["start"] for _i, e in stop_sends} == {to_unix(ACT)}
    recoveries = of_type(receiver, RECOVERED)
    assert len(recoveries) == 2 and recoveries[0]["id"] != recoveries[1]["id"]
    assert {e["id"] for e in receiver.delivered()} == {i for i, _e in sent}, "every id was delivered once up"


@pytest.mark.parametrize("kind", [STOPPED, DELIVERED])
def test_a_change_whose_transaction_answer_was_lost_is_told_once(
    ctx, clock, settings, table_proxy, azurite_connection, azure_kit, receiver, monkeypatch, kind
):
    """Azurite applies the write with its outbox row, and the connection is reset before the answer: the worker
    cannot tell the outcome (the job fails, and its redelivery finds the change made), the row is there."""
    iid, _secret = notified(ctx, clock, azure_kit, receiver, 1)
    proxied = proxied_context(settings, clock, through(azurite_connection, "Table", table_proxy.url))
    if kind == STOPPED:
        refusing(proxied, azure_kit, monkeypatch)
    schedule(ctx)
    table_proxy.add(Rule("reset_after", method="POST", path=r"\$batch"))  # the change's transaction
    drain(proxied)
    assert table_proxy.injected["reset_after"] == 1
    drain_notifications(ctx)
    clock.advance(seconds=GRACE_SECONDS + 1)
    sweep(ctx)
    drain_notifications(ctx)
    [event] = of_type(receiver, kind)
    assert event["data"]["window"]["start"] == to_unix(ACT) and ctx.repo.get(ACCOUNT, iid).last_error == (
        event["data"].get("reason")
    )
