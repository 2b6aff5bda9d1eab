"""A split window's SHA-256 (exporter/notifications/digest.py): its parts are hashed apart, so once the file is
committed (and the window advanced: the export never waits) its file is read back, the SHA-256 written on the
run record, and only then is the window's `delivered` event sent, with it. The audit then checks it like any."""

# ruff: noqa: F811 - the fixture `receiver` is imported from tests/test_delivery_notifications.py, then requested

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from exporter.clock import to_unix
from exporter.destinations.gcs import GcsDestination
from exporter.export import runner
from exporter.jobs import schedule, sweep
from exporter.local.host import drain
from exporter.notifications import outbox
from exporter.notifications.sender import drain_notifications, process_notification
from tests.destination_helpers import create_with_large_window, destination_from_body, part_minimum
from tests.export_helpers import ACCOUNT, ACT, H, due_at
from tests.test_delivery_audit import audit, kinds, put
from tests.test_delivery_notifications import Receiver, receiver  # noqa: F401

MiB = 1024 * 1024


def a_split_window(ctx, clock, kit, monkeypatch, **overrides) -> str:
    """An integration whose first window is exported in three parts, by its jobs on the export queue.

    GCS too, against the planner's rule (a GCS window is exported whole): a split planned before the rule
    is still committed by the relay, and its file needs its SHA-256 all the same."""
    monkeypatch.setattr(GcsDestination, "split_windows", True)
    # S3: every part but the last at least its minimum part size (80,000 rows' CSV is over AWS's 5 MiB).
    rows = max(3_000, 80_000 * part_minimum(kit) * 5 // (4 * 5 * MiB))
    iid = create_with_large_window(ctx, clock, kit, rows, **overrides)
    total = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, ACT, ACT + H))
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=total // 3 + 1))
    monkeypatch.setattr(runner, "BLOCK_BYTES", 5 * MiB)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    assert drain(ctx)["jobs"] == 4, "the planner's job and one per part"
    return iid


def queued_pointers(ctx) -> list[str]:
    queue = ctx.storage.queue(ctx.settings.notify_queue_name)
    return [m.content for m in queue.peek_messages(max_messages=32)]


def test_a_split_window_gets_its_sha256_read_back_before_its_delivered_event(
    ctx, clock, kit, monkeypatch, receiver: Receiver
):
    notify = {"url": receiver.url, "events": ["delivered"]}
    iid = a_split_window(ctx, clock, kit, monkeypatch, notify=notify)
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H, "the window advanced at its commit"
    record = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert record.sha256 == "" and not receiver.requests, "nothing told before the file is read back"
    [pointer] = queued_pointers(ctx)

    assert drain_notifications(ctx) == {"sent": 1}
    data = kit.read(record.file)
    recorded = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert recorded.sha256 == hashlib.sha256(data).hexdigest() and recorded.bytes == len(data)
    [event] = receiver.delivered()
    assert event["id"] == f"{iid}-{to_unix(ACT)}-delivered"
    assert event["data"]["sha256"] == recorded.sha256 and event["data"]["bytes"] == len(data)

    # The same pointer delivered again (the host's redelivery): the row is gone, nothing is read or sent again.
    with monkeypatch.context() as patched:
        patched.setattr(ctx, "destination_for", lambda i: pytest.fail("the file was read again"))
        assert process_notification(ctx, pointer, lambda *_: None) == "dropped"
    assert len(receiver.requests) == 1

    # The audit checks the split window's SHA-256 like any other: one byte changed, the same size, is altered.
    assert audit(ctx, iid)["ok"]
    changed = bytearray(data)
    changed[-2] ^= 1
    put(kit, record.file, bytes(changed))
    assert kinds(audit(ctx, iid)) == ["altered"]


def test_without_notifications_the_split_window_still_gets_its_sha256_even_when_its_pointer_is_lost(
    ctx, clock, azure_kit, monkeypatch
):
    lost: list[str] = []
    with monkeypatch.context() as patched:  # the worker that advanced died before queueing the digest
        patched.setattr(outbox, "send", lambda _ctx, rows: lost.extend(r.event_id for r in rows))
        iid = a_split_window(ctx, clock, azure_kit, monkeypatch)
    assert lost == [f"{iid}-{to_unix(ACT)}-delivered"] and queued_pointers(ctx) == []
    record = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert record.sha256 == ""

    assert sweep(ctx).resent == 0, "not before its grace"
    clock.advance(seconds=outbox.GRACE_SECONDS + 1)
    assert sweep(ctx).resent == 1
    assert drain_notifications(ctx) == {"digested": 1}
    recorded = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert recorded.sha256 == hashlib.sha256(azure_kit.read(record.file)).hexdigest()
    clock.advance(hours=2)
    assert sweep(ctx).resent == 0, "the row is gone once read back"
    assert audit(ctx, iid)["ok"]


def test_a_read_back_refused_is_retried_and_after_24_hours_the_event_goes_without_a_sha256(
    ctx, clock, azure_kit, monkeypatch, receiver: Receiver
):
    iid = a_split_window(ctx, clock, azure_kit, monkeypatch, notify={"url": receiver.url, "events": ["delivered"]})
    refused = destination_from_body(azure_kit.refused_body())
    monkeypatch.setattr(ctx, "destination_for", lambda integration: refused)  # the key rotated right after
    assert drain_notifications(ctx) == {"retrying": 1}
    assert ctx.runs.get(ACCOUNT, iid, to_unix(ACT)).sha256 == "" and not receiver.requests
    for _ in range(30):  # an hour at most between tries
        clock.advance(hours=1)
        drain_notifications(ctx)
    [event] = receiver.delivered()
    assert event["data"]["sha256"] is None and event["data"]["bytes"] == ctx.runs.get(ACCOUNT, iid, to_unix(ACT)).bytes
    assert ctx.runs.get(ACCOUNT, iid, to_unix(ACT)).sha256 == "", "no hash it could not read"
    assert sweep(ctx).resent == 0 and drain_notifications(ctx) == {}, "the row is gone"
