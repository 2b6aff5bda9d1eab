"""UCD entry time: windows select by it, and it is stamped just before the commit that lands, so a row
stamped t is visible before t + commit timeout < t + settle (a failed segment put is restamped)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta

from azure.core.exceptions import ServiceRequestError

from exporter.storage import UCD_SEGMENTS_TABLE
from exporter.ucd import UcdStore, parse_upsert
from exporter.ucd.segments import parse_segment_name
from tests.ucd_helpers import T0, TEN_EVENTS, WIDE, call, eid, ev, purchase_at, rows, stored_ids, upsert, upsert_request


def test_windows_select_by_entry_time_not_event_time(ctx, clock):
    clock.set(T0 + timedelta(hours=5, minutes=12))
    old = ev(ts=(T0 - timedelta(days=3)).isoformat(), price=1)
    upsert(ctx, [{"user_id": "u1", "events": [old]}])
    today = rows(ctx, start=T0 + timedelta(hours=5), end=T0 + timedelta(hours=6))
    assert [(r["event_id"], r["timestamp"]) for r in today] == [(eid("acme", "u1", old), "2026-11-25T10:00:00.000Z")]
    three_days_ago = T0 - timedelta(days=3)
    assert rows(ctx, start=three_days_ago, end=three_days_ago + timedelta(hours=1)) == []
    assert rows(ctx, start=T0 + timedelta(hours=4), end=T0 + timedelta(hours=5, minutes=12)) == []
    assert (
        len(
            rows(
                ctx, start=T0 + timedelta(hours=5, minutes=12), end=T0 + timedelta(hours=5, minutes=12, milliseconds=1)
            )
        )
        == 1
    )
    [segment] = ctx.ucd.segments("acme", *WIDE)
    assert segment.entry_time == clock.now()


class FlakyUploads:
    """Wraps a store's segment put: the listed attempts fail in transit; the clock moves during each attempt."""

    def __init__(self, store, clock, fail_attempts, latency_seconds=5):
        self.real = store.container.upload_blob
        self.clock, self.fail, self.latency = clock, set(fail_attempts), latency_seconds
        self.attempts = []  # (path, clock ms when the attempt started, landed)
        store.container.upload_blob = self

    def __call__(self, path, data, **kw):
        assert kw.get("retry_total") == 0, "the SDK must not re-send a stamped put after its back-off"
        started = int(self.clock.now().timestamp() * 1000)
        n = len(self.attempts) + 1
        self.clock.advance(seconds=self.latency)
        if n in self.fail:
            self.attempts.append((path, started, False))
            raise ServiceRequestError("connection reset by peer")
        self.attempts.append((path, started, True))
        return self.real(path, data, **kw)


def test_a_failed_put_is_restamped_with_the_later_time(ctx, clock):
    stamps = []
    store = UcdStore(
        ctx.storage,
        clock,
        sleep=lambda s: None,
        fault=lambda p: stamps.append(int(clock.now().timestamp() * 1000)) if p == "after_stamp" else None,
    )
    flaky = FlakyUploads(store, clock, fail_attempts={1}, latency_seconds=30)
    result = store.upsert(upsert_request())
    assert (result.stored_events, result.duplicate_events) == (9, 1)
    assert len(stamps) == 2 and stamps[1] == stamps[0] + 30_000
    [segment] = ctx.ucd.segments("acme", *WIDE)
    assert segment.entry_ms == stamps[1], "the committed rows carry the second stamp"
    first_path, second_path = flaky.attempts[0][0], flaky.attempts[1][0]
    assert segment.path == second_path != first_path
    assert not ctx.ucd.container.get_blob_client(first_path).exists()
    intent = ctx.storage.table(UCD_SEGMENTS_TABLE).get_entity("acme", segment.segment_id)
    assert intent["state"] == "committed" and intent["path"] == second_path and int(intent["entry_ms"]) == stamps[1]
    assert int(intent["deadline_ms"]) == stamps[1] + store.ingest.intents.commit_timeout * 1000
    assert set(stored_ids(ctx).values()) == {1}


def test_a_put_that_keeps_failing_aborts_and_a_retry_stores_once(ctx, clock):
    store = UcdStore(ctx.storage, clock, sleep=lambda s: None)
    FlakyUploads(store, clock, fail_attempts={1, 2, 3})
    response = call(dataclasses.replace(ctx, ucd=store), "ucd_upsert", TEN_EVENTS, account="acme")
    assert response.status == 503 and response.body["error"]["code"] == "transient_error"
    assert stored_ids(ctx) == Counter() and list(ctx.ucd.container.list_blobs()) == []
    # The aborted segment releases its claims at once: no need to wait for a deadline.
    result = UcdStore(ctx.storage, clock).upsert(upsert_request())
    assert (result.stored_events, result.duplicate_events) == (9, 1)
    assert set(stored_ids(ctx).values()) == {1} and len(stored_ids(ctx)) == 9


def test_no_committed_segment_is_stamped_before_its_commit_started(ctx, clock):
    """entry >= start of the put that landed, so a row stamped t is visible before t + commit timeout <
    t + settle: nothing appears in a window an export has already read at end + settle."""
    store = UcdStore(ctx.storage, clock, sleep=lambda s: None)
    flaky = FlakyUploads(store, clock, fail_attempts={2, 4, 5}, latency_seconds=7)
    for i in range(5):
        clock.advance(minutes=13)
        body = {"users": [{"user_id": f"u{i}", "events": [purchase_at(m, batch=i) for m in range(4)]}]}
        assert store.upsert(parse_upsert("acme", body)).stored_events == 4
    landed = {path: started for path, started, ok in flaky.attempts if ok}
    segments = ctx.ucd.segments("acme", *WIDE)
    assert len(segments) == 5 and {s.path for s in segments} == set(landed)
    for s in segments:
        assert s.entry_ms >= landed[s.path]
        assert parse_segment_name(s.path).entry_ms == s.entry_ms
    failed = [path for path, _started, ok in flaky.attempts if not ok]
    assert len(failed) == 3 and not any(ctx.ucd.container.get_blob_client(p).exists() for p in failed)
    assert ctx.settings.ucd_commit_timeout_seconds * 2 <= ctx.settings.settle_seconds
