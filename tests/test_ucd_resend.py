"""Resends are cheap: stored events sent again cost Table calls per dedup partition and owner segment,
not per event, and are still answered as duplicates, exactly once.

A platform that retries a whole batch after a timeout resends events the store already holds. Their
claims name a committed segment; that segment's blob says which events it stored, so the request
learns them all from one claim read and one intent read. The Table calls are counted by a proxy in
front of Azurite's Table service (blobs go straight to Azurite).
"""

from __future__ import annotations

import pytest

from exporter.ucd import owners as ucd_owners
from exporter.ucd import parse_upsert
from exporter.ucd.claims import CLAIM_PARTITIONS
from tests.helpers import proxied_context, through
from tests.ucd_helpers import quick_store, stored_ids

# O(partitions): a request's claims span at most CLAIM_PARTITIONS partitions; a few more calls go to
# its profile, the catalog and its own intent. O(events) would be hundreds here.
PER_REQUEST = 10


def events(first: int, n: int) -> list[dict]:
    return [
        {
            "event_name": "purchase",
            "timestamp": f"2026-11-27T{8 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "event_params": {"i": i},
        }
        for i in range(first, first + n)
    ]


def body(*groups: list[dict]) -> dict:
    return {"users": [{"user_id": "u1", "attributes": {"plan": "pro"}, "events": [e for g in groups for e in g]}]}


@pytest.fixture
def send(ctx, clock, settings, table_proxy, azurite_connection):
    """Upsert a body through a store whose Table calls pass the proxy; return (result, Table calls made)."""
    connection = through(azurite_connection, "Table", table_proxy.url)
    proxied_ctx = proxied_context(settings, clock, connection)

    def send(request_body: dict):
        clock.advance(seconds=5)
        before = table_proxy.requests
        result = quick_store(proxied_ctx.storage, clock).upsert(parse_upsert("acme", request_body))
        return result, table_proxy.requests - before

    return send


def assert_stored_once(ctx, *groups: list[dict]) -> None:
    counts = stored_ids(ctx)
    assert len(counts) == sum(len(g) for g in groups) and set(counts.values()) == {1}


def test_a_resend_of_a_stored_request_makes_table_calls_per_partition_not_per_event(ctx, send):
    first = events(0, 480)  # 30 events in each of the 16 partitions
    stored, first_calls = send(body(first))
    assert (stored.stored_events, stored.duplicate_events) == (480, 0)

    again, resend_calls = send(body(first))

    assert (again.received_events, again.stored_events, again.duplicate_events) == (480, 0, 480)
    assert resend_calls <= CLAIM_PARTITIONS + PER_REQUEST, (
        f"{resend_calls} Table calls for a resend of 480 stored events"
    )
    assert resend_calls <= first_calls, "a resend costs no more than the first send"
    assert_stored_once(ctx, first)


def test_stored_events_resent_in_other_batches_cost_calls_per_owner_segment(ctx, send):
    a, b = events(0, 240), events(240, 240)
    send(body(a))
    send(body(b))

    together, calls = send(body(a, b))
    halves, halves_calls = send(body(a[120:], b[:120]))

    assert (together.stored_events, together.duplicate_events) == (0, 480)
    assert (halves.stored_events, halves.duplicate_events) == (0, 240)
    # A partition's transaction meets each owner segment at most once; each owner costs a claim read
    # and an intent read.
    assert calls <= 2 * CLAIM_PARTITIONS + PER_REQUEST + 2, f"{calls} Table calls for 480 stored events"
    assert halves_calls <= 2 * CLAIM_PARTITIONS + PER_REQUEST + 2, f"{halves_calls} Table calls for 240 stored events"
    assert_stored_once(ctx, a, b)


def test_a_partial_resend_stores_only_the_new_events(ctx, send):
    old, new = events(0, 240), events(240, 240)
    send(body(old))

    result, calls = send(body(old, new))

    assert (result.stored_events, result.duplicate_events) == (240, 240)
    # each partition: a transaction that meets the stored events, then one that claims the new ones
    assert calls <= 2 * CLAIM_PARTITIONS + PER_REQUEST
    assert_stored_once(ctx, old, new)


def test_past_its_budget_a_request_reads_the_claims_one_by_one(ctx, send, monkeypatch):
    """An owner segment too large to read for the few events a request shares with it: each claim is
    read instead, and the answer is the same."""
    old, new = events(0, 60), events(60, 20)
    send(body(old))
    monkeypatch.setattr(ucd_owners, "OWNER_READ_FACTOR", 0)
    monkeypatch.setattr(ucd_owners, "OWNER_READ_EXTRA", 0)

    result, calls = send(body(old, new))

    assert (result.stored_events, result.duplicate_events) == (20, 60)
    assert calls >= 60, "each stored event's claim was read"
    assert_stored_once(ctx, old, new)
