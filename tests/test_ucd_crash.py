"""Crash injection into the UCD upsert: a crash between any two storage writes, then a retry, stores
every event exactly once, whether the retry comes at once or after the crashed segment's deadline.

`UcdStore(fault=f)` calls `f(point)` between storage writes; a fault that raises is a process crash there.
"""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.errors import TransientError
from exporter.ucd import UcdStore
from tests.ucd_helpers import (
    TEN_EVENTS,
    WIDE,
    Crash,
    call,
    crash_at,
    event_ids,
    purchase_at,
    quick_store,
    stored_ids,
    upsert_request,
)

POINTS = [
    "after_profiles",
    "after_catalog",
    "after_intent",
    "after_claims",
    "after_stamp",
    "after_upload",
    "after_commit_mark",
]
VISIBLE_AFTER = {"after_upload", "after_commit_mark"}  # the segment blob has landed before these points
EXTRA = {"user_id": "u3", "events": [purchase_at(50), purchase_at(51)]}


def assert_consistent(result):
    assert result.stored_events + result.duplicate_events == result.received_events


@pytest.mark.parametrize("point", POINTS)
def test_crash_then_retry_after_the_deadline_stores_each_event_once(ctx, clock, point):
    crashing = UcdStore(ctx.storage, clock, fault=crash_at(point))
    with pytest.raises(Crash):
        crashing.upsert(upsert_request())
    visible = stored_ids(ctx)
    assert visible == (Counter(event_ids()) if point in VISIBLE_AFTER else Counter()), (
        "a crash never half-writes a segment"
    )

    clock.advance(seconds=max(crashing.ingest.intents.claim_budget, crashing.ingest.intents.commit_timeout) + 1)
    retry_body = {"users": TEN_EVENTS["users"] + [EXTRA]}  # the retry also carries new events
    result = UcdStore(ctx.storage, clock).upsert(upsert_request(retry_body))
    assert_consistent(result)
    assert result.received_events == 12
    assert result.stored_events == (2 if point in VISIBLE_AFTER else 11)

    counts = stored_ids(ctx)
    assert set(counts) == event_ids(retry_body), "no event lost"
    assert set(counts.values()) == {1}, "no event duplicated"
    again = UcdStore(ctx.storage, clock).upsert(upsert_request(retry_body))
    assert (again.stored_events, again.duplicate_events) == (0, 12)
    assert stored_ids(ctx) == counts
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {"email": "a@x"}
    rows = [r for b in ctx.ucd.read_window("acme", *WIDE, columns=["a:email"]) for r in b.to_pylist()]
    assert {r["a:email"] for r in rows if r["user_id"] == "u1"} == {"a@x"}


EXPECTED_WITHOUT_WAITING = {
    "after_profiles": "stored",
    "after_catalog": "stored",
    "after_intent": "stored",
    "after_claims": "busy",
    "after_stamp": "busy",  # the crashed segment may still commit until its deadline
    "after_upload": "duplicates",
    "after_commit_mark": "duplicates",
}


@pytest.mark.parametrize("point", POINTS)
def test_crash_then_immediate_retry_is_exactly_once_or_503(ctx, clock, point):
    with pytest.raises(Crash):
        quick_store(ctx.storage, clock, fault=crash_at(point)).upsert(upsert_request())
    ctx.ucd = quick_store(ctx.storage, clock)
    response = call(ctx, "ucd_upsert", TEN_EVENTS, account="acme")
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
        assert set(counts) == event_ids()

    # Whatever happened, a retry once the crashed segment's deadline has passed completes the job exactly once.
    clock.advance(seconds=ctx.ucd.ingest.intents.claim_budget + 1)
    result = quick_store(ctx.storage, clock).upsert(upsert_request())
    assert_consistent(result)
    counts = stored_ids(ctx)
    assert set(counts) == event_ids() and set(counts.values()) == {1}


def test_crash_while_committing_taken_over_events(ctx, clock):
    """The second segment of a request (events taken over from a dead one) crashes too; the next retry completes."""
    with pytest.raises(Crash):
        UcdStore(ctx.storage, clock, fault=crash_at("after_claims")).upsert(upsert_request())
    clock.advance(seconds=61)
    # New events commit first in their own segment; the takeover segment then crashes after its stamp.
    retry_body = {"users": TEN_EVENTS["users"] + [EXTRA]}
    second = UcdStore(ctx.storage, clock, fault=crash_at("after_stamp", occurrence=2))
    with pytest.raises(Crash):
        second.upsert(upsert_request(retry_body))
    assert set(stored_ids(ctx)) == event_ids({"users": [EXTRA]})
    clock.advance(seconds=second.ingest.intents.commit_timeout + 1)
    result = UcdStore(ctx.storage, clock).upsert(upsert_request(retry_body))
    assert (result.received_events, result.stored_events, result.duplicate_events) == (12, 9, 3)
    counts = stored_ids(ctx)
    assert set(counts) == event_ids(retry_body) and set(counts.values()) == {1}


def test_a_slow_owner_that_was_taken_over_cannot_commit(ctx, clock):
    """An owner paused past its deadline loses its claims to a retry and then fails to stamp: no duplicate."""
    intruder_results = []

    def pause_then_resume(point):
        if point == "after_claims":
            clock.advance(seconds=61)  # the owner stalls past its claim budget ...
            intruder_results.append(UcdStore(ctx.storage, clock).upsert(upsert_request()))  # ... and a retry takes over

    slow = UcdStore(ctx.storage, clock, fault=pause_then_resume)
    with pytest.raises(TransientError):
        slow.upsert(upsert_request())
    [intruder] = intruder_results
    assert (intruder.stored_events, intruder.duplicate_events) == (9, 1)
    counts = stored_ids(ctx)
    assert set(counts) == event_ids() and set(counts.values()) == {1}
    assert len(ctx.ucd.segments("acme", *WIDE)) == 1
