"""Storage that applies a write but loses its answer: the UCD must read its own write as its own.

A fault-injecting proxy sits between the store and Azurite's Table service. Its `reset_after` fault
lets Azurite apply a request and then resets the connection, so the SDK retries a PUT and meets its
own first write (412 or 409); a POST is not retried by the SDK and fails with the outcome unknown.
Each test is one of those answers read as "another request did it", which lost or blocked events.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from exporter.errors import TransientError
from exporter.local.faultproxy import Rule
from exporter.storage import UCD_EVENTS_TABLE, UCD_SEGMENTS_TABLE
from exporter.ucd import UcdStore, parse_upsert
from exporter.ucd.claims import CLAIM_PARTITION_CHARS
from tests.helpers import proxied_context, through
from tests.ucd_helpers import Crash, crash_at, event_ids, quick_store, stored_ids


def body(n: int = 3, user: str = "u1") -> dict:
    return {
        "users": [
            {
                "user_id": user,
                "events": [
                    {"event_name": "purchase", "timestamp": f"2026-11-27T08:00:{i:02d}Z", "event_params": {"i": i}}
                    for i in range(n)
                ],
            }
        ]
    }


@pytest.fixture
def proxied(ctx, clock, settings, table_proxy, azurite_connection):
    """A store whose Table calls pass through the proxy (blobs and queues go straight to Azurite)."""
    connection = through(azurite_connection, "Table", table_proxy.url)
    proxied_ctx = proxied_context(settings, clock, connection)

    return lambda **kw: quick_store(proxied_ctx.storage, clock, **kw)


def assert_exactly_once(ctx, request_body) -> None:
    counts = stored_ids(ctx)
    assert set(counts) == event_ids(request_body), "an acknowledged event is missing"
    assert set(counts.values()) == {1}, "an event is stored twice"


def crash_after_claims(ctx, clock) -> None:
    """A first request claims every event, then dies; past its claim budget its segment is dead."""
    dying = UcdStore(ctx.storage, clock, fault=crash_at("after_claims"))
    with pytest.raises(Crash):
        dying.upsert(parse_upsert("acme", body()))
    clock.advance(seconds=dying.ingest.intents.claim_budget + 1)


def test_a_take_over_whose_answer_is_lost_keeps_the_event(ctx, clock, proxied, table_proxy):
    """The confirmed loss: the retried take-over PUT meets its own write (412), and the event was
    counted as a duplicate of a segment that never held it. A resend could not bring it back."""
    crash_after_claims(ctx, clock)
    table_proxy.add(Rule("reset_after", method="PUT", path=rf"{UCD_EVENTS_TABLE}\(", times=1))

    result = proxied().upsert(parse_upsert("acme", body()))

    assert table_proxy.injected["reset_after"] == 1
    assert (result.stored_events, result.duplicate_events) == (3, 0)
    assert_exactly_once(ctx, body())
    again = proxied().upsert(parse_upsert("acme", body()))
    assert (again.stored_events, again.duplicate_events) == (0, 3)
    assert_exactly_once(ctx, body())


def one_partition_body(n: int) -> dict:
    """`n` events of user u1 whose claims share one dedup partition, so they are claimed in one transaction."""
    by_partition: dict[str, list[dict]] = defaultdict(list)
    for i in range(40 * n):
        event = {
            "event_name": "purchase",
            "timestamp": f"2026-11-27T08:{i // 60:02d}:{i % 60:02d}Z",
            "event_params": {"i": i},
        }
        [user] = parse_upsert("acme", {"users": [{"user_id": "u1", "events": [event]}]}).users
        group = by_partition[user.events[0].event_id[:CLAIM_PARTITION_CHARS]]
        group.append(event)
        if len(group) == n:
            return {"users": [{"user_id": "u1", "events": group}]}
    raise AssertionError("not enough events in one partition")


def nth_batch(n: int):
    """A rule condition: the n-th claim transaction (`$batch`) through the proxy, counted from 1."""
    seen = itertools.count(1)
    return lambda method, path, headers: next(seen) == n


def test_a_claim_whose_answer_is_lost_keeps_the_event(ctx, clock, proxied, table_proxy):
    """After a conflict, the transaction claiming the rest of the chunk lands but its answer is lost:
    those events are ours, not someone else's."""
    three = one_partition_body(3)
    ctx.ucd.upsert(parse_upsert("acme", {"users": [{"user_id": "u1", "events": three["users"][0]["events"][:1]}]}))
    # The first transaction meets the stored event and rolls back; the second claims the other two.
    table_proxy.add(Rule("reset_after", method="POST", path=r"\$batch", when=nth_batch(2)))

    result = proxied().upsert(parse_upsert("acme", three))

    assert table_proxy.injected["reset_after"] == 1
    assert (result.stored_events, result.duplicate_events) == (2, 1)
    assert_exactly_once(ctx, three)


def test_a_conflicting_claim_transaction_whose_answer_is_lost_is_still_judged(ctx, clock, proxied, table_proxy):
    """The transaction that meets a stored event rolls back and its answer is lost: the stored event is
    a duplicate, the others are claimed, none is read as someone else's or lost."""
    three = one_partition_body(3)
    ctx.ucd.upsert(parse_upsert("acme", {"users": [{"user_id": "u1", "events": three["users"][0]["events"][:1]}]}))
    table_proxy.add(Rule("reset_after", method="POST", path=r"\$batch", times=1))

    result = proxied().upsert(parse_upsert("acme", three))

    assert table_proxy.injected["reset_after"] == 1
    assert (result.stored_events, result.duplicate_events) == (2, 1)
    assert_exactly_once(ctx, three)


LOST_ANSWERS = [
    # The whole claim transaction lands, its answer is lost: every event is still ours.
    pytest.param("POST", r"\$batch", 5, id="claim transaction"),
    pytest.param("POST", rf"^/[^/]+/[^/]*{UCD_SEGMENTS_TABLE}(\?|$)", 3, id="intent"),
    # The stamp PUT is retried by the SDK and meets its own write (412): not a take-over by another request.
    pytest.param("PUT", rf"{UCD_SEGMENTS_TABLE}\(", 3, id="stamp"),
]


@pytest.mark.parametrize("method, path, events", LOST_ANSWERS)
def test_a_write_whose_answer_is_lost_is_still_ours_and_commits_at_once(
    ctx, clock, proxied, table_proxy, method, path, events
):
    table_proxy.add(Rule("reset_after", method=method, path=path, times=1))

    result = proxied().upsert(parse_upsert("acme", body(events)))

    assert table_proxy.injected["reset_after"] == 1
    assert (result.stored_events, result.duplicate_events) == (events, 0)
    assert_exactly_once(ctx, body(events))


def test_a_request_that_failed_on_a_transient_fault_succeeds_on_its_next_attempt(ctx, clock, proxied):
    """A failed request gives up its claims at once, so its retry does not wait for their deadline."""

    def storage_fails_once_claimed(point):
        if point == "after_claims":
            raise TransientError("the storage failed after the claims landed")  # the process lives on

    with pytest.raises(TransientError):
        proxied(fault=storage_fails_once_claimed).upsert(parse_upsert("acme", body()))

    result = proxied().upsert(parse_upsert("acme", body()))  # same instant: no deadline has passed

    assert (result.stored_events, result.duplicate_events) == (3, 0)
    assert_exactly_once(ctx, body())


def test_an_unanswered_existence_check_never_puts_a_second_copy(ctx, clock, proxied, table_proxy, monkeypatch):
    """After a failed segment put, a failed existence check is not read as "no blob": the request
    fails (503) without a restamped second put, and the events are stored once in the end."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    store = proxied()
    real_put = ctx.ucd.container.upload_blob  # another client of the same container: its own blob clients stay real
    puts = []

    def put_lands_answer_lost(path, data, **kw):
        puts.append(path)
        real_put(path, data, **kw)
        raise ServiceRequestError("connection reset after the put")

    class Unanswered:
        def exists(self):
            raise HttpResponseError(message="503 server busy")

    monkeypatch.setattr(store.container, "upload_blob", put_lands_answer_lost)
    monkeypatch.setattr(store.container, "get_blob_client", lambda path: Unanswered())
    with pytest.raises(TransientError):
        store.upsert(parse_upsert("acme", body()))
    assert len(puts) == 1, "no second put while the first one's outcome is unknown"

    clock.advance(seconds=store.ingest.intents.claim_budget + 1)
    result = proxied().upsert(parse_upsert("acme", body()))
    assert (result.stored_events, result.duplicate_events) == (0, 3)
    assert_exactly_once(ctx, body())
