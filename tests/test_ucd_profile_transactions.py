"""New profiles are created in entity-group transactions (up to 100 per round trip). A transaction is
all or nothing: when it fails, lands with its answer lost, or meets a profile a concurrent request
created meanwhile, every profile of it is merged on its own from a fresh read, and nothing is lost.
"""

from __future__ import annotations

import pytest

from exporter.local.faultproxy import Rule
from exporter.ucd import UcdStore, parse_upsert
from exporter.ucd import profiles as ucd_profiles
from tests.helpers import proxied_context, through
from tests.ucd_helpers import WIDE, event_ids, purchase_at, stored_ids

USERS = [
    {"user_id": f"u{i}", "attributes": {"email": f"u{i}@x", "n": i}, "events": [purchase_at(i)]} for i in range(1, 4)
]


def attributes_on_rows(ctx) -> dict[str, str | None]:
    batches = ctx.ucd.read_window("acme", *WIDE, columns=["a:email"])
    return {r["user_id"]: r["a:email"] for b in batches for r in b.to_pylist()}


def assert_all_stored(ctx) -> None:
    counts = stored_ids(ctx)
    assert set(counts) == event_ids({"users": USERS}) and set(counts.values()) == {1}
    for i in range(1, 4):
        assert ctx.ucd.profile("acme", f"u{i}")["attributes"] == {"email": f"u{i}@x", "n": i}
    assert attributes_on_rows(ctx) == {f"u{i}": f"u{i}@x" for i in range(1, 4)}


def test_new_profiles_are_created_in_one_transaction(ctx, monkeypatch):
    calls = []
    table = ctx.ucd.profiles.table
    real = table.submit_transaction
    monkeypatch.setattr(table, "submit_transaction", lambda ops, **kw: (calls.append(len(ops)), real(ops, **kw))[1])
    monkeypatch.setattr(table, "create_entity", lambda *a, **kw: pytest.fail("a new profile written on its own"))

    result = ctx.ucd.upsert(parse_upsert("acme", {"users": USERS}))

    assert calls == [3]
    assert (result.stored_events, result.duplicate_events) == (3, 0)
    assert_all_stored(ctx)


def test_more_than_a_transaction_of_new_profiles_takes_several(ctx, monkeypatch):
    calls = []
    table = ctx.ucd.profiles.table
    real = table.submit_transaction
    monkeypatch.setattr(table, "submit_transaction", lambda ops, **kw: (calls.append(len(ops)), real(ops, **kw))[1])
    users = [{"user_id": f"v{i}", "attributes": {"k": i}} for i in range(250)]

    ctx.ucd.upsert(parse_upsert("acme", {"users": users}))

    assert sorted(calls) == [50, 100, 100]
    assert all(ctx.ucd.profile("acme", f"v{i}")["attributes"] == {"k": i} for i in range(0, 250, 37))


@pytest.mark.parametrize("kind", ["reset_after", "reset_before", "500"])
def test_a_profile_transaction_that_fails_or_loses_its_answer_loses_nothing(
    ctx, clock, settings, table_proxy, azurite_connection, kind
):
    """`reset_after`: the transaction landed and its answer was lost; `reset_before` and 500: it did not
    land. Either way each profile is merged again on its own, and a landed one merges to itself."""
    proxied = proxied_context(settings, clock, through(azurite_connection, "Table", table_proxy.url))
    # The first transaction of the request is the profiles' (they are written before any claim).
    table_proxy.add(Rule(kind, method="POST", path=r"\$batch", times=1))

    result = UcdStore(proxied.storage, clock).upsert(parse_upsert("acme", {"users": USERS}))

    assert table_proxy.injected[kind] == 1
    assert (result.stored_events, result.duplicate_events) == (3, 0)
    assert_all_stored(ctx)


def test_a_profile_created_concurrently_fails_the_transaction_and_both_merges_stay(ctx, clock, monkeypatch):
    """Another request creates u2 between this request's read and its transaction: the transaction rolls
    back whole (u1 and u3 are not in it either), and each profile is merged again, u2 onto the other's."""
    other = UcdStore(ctx.storage, clock)
    real_read = ucd_profiles.get_or_none
    raced = []

    def read_then_race(table, partition, row):
        current = real_read(table, partition, row)
        if row == "u2" and not raced:
            raced.append(row)
            other.upsert(parse_upsert("acme", {"users": [{"user_id": "u2", "attributes": {"plan": "pro"}}]}))
        return current  # as read before the other request created it

    monkeypatch.setattr(ucd_profiles, "get_or_none", read_then_race)
    failed = []
    table = ctx.ucd.profiles.table
    real_submit = table.submit_transaction

    def submit(ops, **kw):
        try:
            return real_submit(ops, **kw)
        except Exception as exc:
            failed.append((len(ops), type(exc).__name__))
            raise

    monkeypatch.setattr(table, "submit_transaction", submit)

    result = ctx.ucd.upsert(parse_upsert("acme", {"users": USERS}))

    assert raced == ["u2"] and failed == [(3, "TableTransactionError")]
    assert (result.stored_events, result.duplicate_events) == (3, 0)
    assert ctx.ucd.profile("acme", "u2")["attributes"] == {"plan": "pro", "email": "u2@x", "n": 2}
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {"email": "u1@x", "n": 1}
    assert ctx.ucd.profile("acme", "u3")["attributes"] == {"email": "u3@x", "n": 3}
    assert attributes_on_rows(ctx) == {f"u{i}": f"u{i}@x" for i in range(1, 4)}
