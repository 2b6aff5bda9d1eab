"""Crash injection into the UCD upsert: a crash between any two storage writes, then a retry, stores
every event exactly once; a failed segment put is restamped, so no row lands in a window already past.

`UcdStore(fault=f)` calls `f(point)` between storage writes; a fault that raises is a process crash there.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta

import pytest
from azure.core.exceptions import ServiceRequestError

from exporter.errors import TransientError
from exporter.ucd import UcdStore, parse_upsert
from exporter.ucd.segments import parse_segment_name
from exporter.storage import UCD_SEGMENTS_TABLE
from tests.conftest import T0, call

POINTS = ["after_profiles", "after_catalog", "after_intent", "after_claims", "after_stamp", "after_upload", "after_commit_mark"]
VISIBLE_AFTER = {"after_upload", "after_commit_mark"}  # the segment blob has landed before these points
WIDE = (T0 - timedelta(hours=2), T0 + timedelta(hours=6))


class Crash(BaseException):
    """The process dies here (BaseException: a dead process runs no clean-up)."""


def crash_at(point, occurrence=1):
    seen = Counter()

    def fault(p):
        seen[p] += 1
        if p == point and seen[p] == occurrence:
            raise Crash(p)
    return fault


def ev(minute, **params):
    return {"event_name": "purchase", "timestamp": f"2026-11-27T08:{minute:02d}:00Z", "event_params": {"n": minute, **params}}


BODY = {"users": [
    {"user_id": "u1", "attributes": {"email": "a@x"}, "events": [ev(m) for m in range(6)] + [ev(0)]},  # one duplicate
    {"user_id": "anon-2", "events": [ev(m) for m in range(3)]},
]}
EXTRA = {"user_id": "u3", "events": [ev(50), ev(51)]}


def request(body=BODY):
    return parse_upsert("acme", body)


def unique_ids(body=BODY):
    return {e.event_id for u in request(body).users for e in u.events}


def stored_ids(ctx) -> Counter:
    return Counter(r["event_id"] for b in ctx.ucd.read_window("acme", *WIDE) for r in b.to_pylist())


def assert_consistent(result):
    assert result.stored_events + result.duplicate_events == result.received_events


@pytest.mark.parametrize("point", POINTS)
def test_crash_then_retry_after_the_deadline_stores_each_event_once(ctx, clock, point):
    crashing = UcdStore(ctx.storage, clock, fault=crash_at(point))
    with pytest.raises(Crash):
        crashing.upsert(request())
    visible = stored_ids(ctx)
    assert visible == (Counter(unique_ids()) if point in VISIBLE_AFTER else Counter()), "a crash never half-writes a segment"

    clock.advance(seconds=max(crashing.ingest.claim_budget, crashing.ingest.commit_timeout) + 1)
    retry_body = {"users": BODY["users"] + [EXTRA]}  # the retry also carries new events
    result = UcdStore(ctx.storage, clock).upsert(request(retry_body))
    assert_consistent(result)
    assert result.received_events == 12
    assert result.stored_events == (2 if point in VISIBLE_AFTER else 11)

    counts = stored_ids(ctx)
    assert set(counts) == unique_ids(retry_body), "no event lost"
    assert set(counts.values()) == {1}, "no event duplicated"
    again = UcdStore(ctx.storage, clock).upsert(request(retry_body))
    assert (again.stored_events, again.duplicate_events) == (0, 12)
    assert stored_ids(ctx) == counts
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {"email": "a@x"}
    rows = [r for b in ctx.ucd.read_window("acme", *WIDE, columns=["a:email"]) for r in b.to_pylist()]
    assert {r["a:email"] for r in rows if r["user_id"] == "u1"} == {"a@x"}


EXPECTED_WITHOUT_WAITING = {
    "after_profiles": "stored", "after_catalog": "stored", "after_intent": "stored",
    "after_claims": "busy", "after_stamp": "busy",  # the crashed segment may still commit until its deadline
    "after_upload": "duplicates", "after_commit_mark": "duplicates",
}


@pytest.mark.parametrize("point", POINTS)
def test_crash_then_immediate_retry_is_exactly_once_or_503(ctx, clock, point):
    def store(**kw):
        s = UcdStore(ctx.storage, clock, commit_timeout_seconds=1, sleep=lambda s: None, **kw)
        s.ingest.poll_interval = 0.01
        return s

    with pytest.raises(Crash):
        store(fault=crash_at(point)).upsert(request())
    ctx.ucd = store()
    response = call(ctx, "ucd_upsert", BODY, account="acme")
    counts = stored_ids(ctx)
    assert set(counts.values()) <= {1}, "never a duplicate"
    expected = EXPECTED_WITHOUT_WAITING[point]
    if expected == "busy":
        assert response.status == 503, response.body
        assert response.body["error"]["code"] == "transient_error"
        assert counts == Counter()
    else:
        assert response.status == 200, response.body
        assert response.body["stored_events"] == (9 if expected == "stored" else 0)
        assert response.body["stored_events"] + response.body["duplicate_events"] == 10
        assert set(counts) == unique_ids()

    # Whatever happened, a retry once the crashed segment's deadline has passed completes the job exactly once.
    clock.advance(seconds=ctx.ucd.ingest.claim_budget + 1)
    result = store().upsert(request())
    assert_consistent(result)
    counts = stored_ids(ctx)
    assert set(counts) == unique_ids() and set(counts.values()) == {1}


def test_crash_while_committing_taken_over_events(ctx, clock):
    """The second segment of a request (events taken over from a dead one) crashes too; the next retry completes."""
    with pytest.raises(Crash):
        UcdStore(ctx.storage, clock, fault=crash_at("after_claims")).upsert(request())
    clock.advance(seconds=61)
    # New events commit first in their own segment; the takeover segment then crashes after its stamp.
    retry_body = {"users": BODY["users"] + [EXTRA]}
    second = UcdStore(ctx.storage, clock, fault=crash_at("after_stamp", occurrence=2))
    with pytest.raises(Crash):
        second.upsert(request(retry_body))
    assert set(stored_ids(ctx)) == unique_ids({"users": [EXTRA]})
    clock.advance(seconds=second.ingest.commit_timeout + 1)
    result = UcdStore(ctx.storage, clock).upsert(request(retry_body))
    assert (result.received_events, result.stored_events, result.duplicate_events) == (12, 9, 3)
    counts = stored_ids(ctx)
    assert set(counts) == unique_ids(retry_body) and set(counts.values()) == {1}


def test_a_slow_owner_that_was_taken_over_cannot_commit(ctx, clock):
    """An owner paused past its deadline loses its claims to a retry and then fails to stamp: no duplicate."""
    intruder_results = []

    def pause_then_resume(point):
        if point == "after_claims":
            clock.advance(seconds=61)  # the owner stalls past its claim budget ...
            intruder_results.append(UcdStore(ctx.storage, clock).upsert(request()))  # ... and a retry takes over

    slow = UcdStore(ctx.storage, clock, fault=pause_then_resume)
    with pytest.raises(TransientError):
        slow.upsert(request())
    [intruder] = intruder_results
    assert (intruder.stored_events, intruder.duplicate_events) == (9, 1)
    counts = stored_ids(ctx)
    assert set(counts) == unique_ids() and set(counts.values()) == {1}
    assert len(ctx.ucd.segments("acme", *WIDE)) == 1


# ------------------------------------------------------------------ entry time and settle


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
    store = UcdStore(ctx.storage, clock, sleep=lambda s: None,
                     fault=lambda p: stamps.append(int(clock.now().timestamp() * 1000)) if p == "after_stamp" else None)
    flaky = FlakyUploads(store, clock, fail_attempts={1}, latency_seconds=30)
    result = store.upsert(request())
    assert (result.stored_events, result.duplicate_events) == (9, 1)
    assert len(stamps) == 2 and stamps[1] == stamps[0] + 30_000
    [segment] = ctx.ucd.segments("acme", *WIDE)
    assert segment.entry_ms == stamps[1], "the committed rows carry the second stamp"
    first_path, second_path = flaky.attempts[0][0], flaky.attempts[1][0]
    assert segment.path == second_path != first_path
    assert not ctx.ucd.container.get_blob_client(first_path).exists()
    intent = ctx.storage.table(UCD_SEGMENTS_TABLE).get_entity("acme", segment.segment_id)
    assert intent["state"] == "committed" and intent["path"] == second_path and int(intent["entry_ms"]) == stamps[1]
    assert int(intent["deadline_ms"]) == stamps[1] + store.ingest.commit_timeout * 1000
    assert set(stored_ids(ctx).values()) == {1}


def test_a_put_that_keeps_failing_aborts_and_a_retry_stores_once(ctx, clock):
    store = UcdStore(ctx.storage, clock, sleep=lambda s: None)
    FlakyUploads(store, clock, fail_attempts={1, 2, 3})
    response = call(dataclasses.replace(ctx, ucd=store), "ucd_upsert", BODY, account="acme")
    assert response.status == 503 and response.body["error"]["code"] == "transient_error"
    assert stored_ids(ctx) == Counter() and list(ctx.ucd.container.list_blobs()) == []
    # The aborted segment releases its claims at once: no need to wait for a deadline.
    result = UcdStore(ctx.storage, clock).upsert(request())
    assert (result.stored_events, result.duplicate_events) == (9, 1)
    assert set(stored_ids(ctx).values()) == {1} and len(stored_ids(ctx)) == 9


def test_no_committed_segment_is_stamped_before_its_commit_started(ctx, clock):
    """entry >= start of the put that landed, so a row stamped t is visible before t + commit timeout <
    t + settle: nothing appears in a window an export has already read at end + settle."""
    store = UcdStore(ctx.storage, clock, sleep=lambda s: None)
    flaky = FlakyUploads(store, clock, fail_attempts={2, 4, 5}, latency_seconds=7)
    for i in range(5):
        clock.advance(minutes=13)
        body = {"users": [{"user_id": f"u{i}", "events": [ev(m, batch=i) for m in range(4)]}]}
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
