"""Stored rows, not transmissions: one row per event identity, whatever the spelling, repetition or concurrency."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from exporter.ucd import UcdStore, parse_upsert
from tests.ucd_helpers import T0, WIDE, eid, ev, row_ids, rows, run_together, upsert


def test_dedup_within_one_request(ctx):
    a = ev(price=9.5, currency="EUR")
    a_other_spelling = ev(ts="2026-11-28T09:00:00.000+00:00", currency="EUR", price=9.5)
    a_offset = ev(ts="2026-11-28T10:00:00+01:00", price=9.5, currency="EUR")
    b = ev(price=9.5, currency="USD")  # different params: a different event
    body = upsert(
        ctx,
        [
            {"user_id": "u1", "events": [a, a, a_other_spelling]},
            {"user_id": "u1", "events": [a_offset, b]},  # the same user twice in one request
            {"user_id": "u2", "events": [a]},  # the same event of another user is another event
        ],
    )
    assert body == {"received_events": 6, "stored_events": 3, "duplicate_events": 3}
    got = rows(ctx)
    assert sorted(r["event_id"] for r in got) == sorted(
        {eid("acme", "u1", a), eid("acme", "u1", b), eid("acme", "u2", a)}
    )
    assert {(r["user_id"], r["timestamp"]) for r in got} == {
        ("u1", "2026-11-28T09:00:00.000Z"),
        ("u2", "2026-11-28T09:00:00.000Z"),
    }
    assert len(ctx.ucd.segments("acme", *WIDE)) == 1


def test_dedup_across_requests(ctx, clock):
    a, b = ev(price=1), ev("view", page="/")
    assert upsert(ctx, [{"user_id": "u1", "events": [a, b]}]) == {
        "received_events": 2,
        "stored_events": 2,
        "duplicate_events": 0,
    }
    clock.advance(minutes=5)
    a_again = ev(ts="2026-11-28T09:00:00+00:00", price=1)
    c = ev(price=2)
    assert upsert(ctx, [{"user_id": "u1", "events": [a_again, b, c]}]) == {
        "received_events": 3,
        "stored_events": 1,
        "duplicate_events": 2,
    }
    clock.advance(hours=3)
    assert upsert(ctx, [{"user_id": "u1", "events": [a, b, c]}]) == {
        "received_events": 3,
        "stored_events": 0,
        "duplicate_events": 3,
    }
    got = row_ids(ctx)
    assert sorted(got) == sorted(eid("acme", "u1", e) for e in (a, b, c))
    # a request that stores nothing commits no segment
    assert [s.entry_time for s in ctx.ucd.segments("acme", *WIDE)] == [T0, T0 + timedelta(minutes=5)]


def test_the_same_event_in_another_account_is_another_row(ctx):
    a = ev(price=1)
    assert upsert(ctx, [{"user_id": "u1", "events": [a]}])["stored_events"] == 1
    assert upsert(ctx, [{"user_id": "u1", "events": [a]}], account="globex")["stored_events"] == 1
    assert len(row_ids(ctx)) == 1 and len(row_ids(ctx, account="globex")) == 1


def test_a_hundred_sends_store_one_row(ctx, clock):
    event = ev(price=9.5, nested={"b": [1, 2], "a": None})
    totals = Counter()
    for i in range(100):
        clock.advance(seconds=7)
        spelling = dict(event, timestamp="2026-11-28T09:00:00Z" if i % 2 else "2026-11-28T09:00:00.000+00:00")
        totals.update(upsert(ctx, [{"user_id": "u1", "events": [spelling]}]))
    assert totals == {"received_events": 100, "stored_events": 1, "duplicate_events": 99}
    assert upsert(ctx, [{"user_id": "u1", "events": [event] * 100}]) == {
        "received_events": 100,
        "stored_events": 0,
        "duplicate_events": 100,
    }
    assert row_ids(ctx) == [eid("acme", "u1", event)]
    assert len(ctx.ucd.segments("acme", *WIDE)) == 1


def test_concurrent_duplicate_upserts_store_each_event_once(ctx, clock):
    pool = [ev(ts=f"2026-11-28T09:{m:02d}:00Z", n=m) for m in range(40)]
    bodies = [[pool[(8 * i + k) % 40] for k in range(20)] for i in range(8)]  # each event in 4 bodies
    stores = [UcdStore(ctx.storage, clock) for _ in range(8)]  # one store per worker, as on separate instances
    requests = [parse_upsert("acme", {"users": [{"user_id": "u1", "events": body}]}) for body in bodies]
    results = run_together(lambda i: stores[i].upsert(requests[i]), 8)
    assert all(r.received_events == 20 and r.stored_events + r.duplicate_events == 20 for r in results)
    assert sum(r.stored_events for r in results) == 40
    counts = Counter(row_ids(ctx))
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert set(counts) == {eid("acme", "u1", e) for e in pool}
