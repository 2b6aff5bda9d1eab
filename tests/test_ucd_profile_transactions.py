"""New profiles are created in entity-group transactions (up to 100 per round trip): up to 100 users not
known to be stored are created at once (the transaction lands only if all are new); more are first found
by probes that write nothing. A transaction is all or nothing: when it fails, lands with its answer lost,
or meets a profile a concurrent request created meanwhile, its users are read and merged from what is
stored, and nothing is lost. A probe that fails or loses its answer only means its users are read.
"""

from __future__ import annotations

import itertools

import pytest
from azure.core.exceptions import ResourceNotFoundError

from exporter.local.faultproxy import Rule
from exporter.ucd import UcdStore, parse_upsert
from tests.helpers import proxied_context, through
from tests.ucd_helpers import WIDE, event_ids, purchase_at, stored_ids


def people(n: int) -> list[dict]:
    return [
        {"user_id": f"u{i}", "attributes": {"email": f"u{i}@x", "n": i}, "events": [purchase_at(i % 60)]}
        for i in range(1, n + 1)
    ]


USERS = people(3)


def attributes_on_rows(ctx) -> dict[str, str | None]:
    batches = ctx.ucd.read_window("acme", *WIDE, columns=["a:email"])
    return {r["user_id"]: r["a:email"] for b in batches for r in b.to_pylist()}


def assert_all_stored(ctx, users: list[dict] = USERS) -> None:
    counts = stored_ids(ctx)
    assert set(counts) == event_ids({"users": users}) and set(counts.values()) == {1}
    for i in range(1, len(users) + 1):
        assert ctx.ucd.profile("acme", f"u{i}")["attributes"] == {"email": f"u{i}@x", "n": i}
    assert attributes_on_rows(ctx) == {f"u{i}": f"u{i}@x" for i in range(1, len(users) + 1)}


def watch(monkeypatch, table) -> tuple[list, list]:
    """Record the profile table's transactions (operation kinds, outcome) and single-entity reads."""
    transactions: list[tuple[list[str], str]] = []
    reads: list[str] = []
    submit, get = table.submit_transaction, table.get_entity

    def submit_recorded(ops, **kw):
        kinds = [op[0] for op in ops]
        try:
            answer = submit(ops, **kw)
        except Exception as exc:
            transactions.append((kinds, type(exc).__name__))
            raise
        transactions.append((kinds, "ok"))
        return answer

    def get_recorded(partition, row, **kw):
        reads.append(row)
        return get(partition, row, **kw)

    monkeypatch.setattr(table, "submit_transaction", submit_recorded)
    monkeypatch.setattr(table, "get_entity", get_recorded)
    return transactions, reads


def test_new_profiles_are_created_at_once_in_one_transaction_without_a_read(ctx, monkeypatch):
    transactions, reads = watch(monkeypatch, ctx.ucd.profiles.table)
    monkeypatch.setattr(
        ctx.ucd.profiles.table, "create_entity", lambda *a, **kw: pytest.fail("a new profile written on its own")
    )

    result = ctx.ucd.upsert(parse_upsert("acme", {"users": USERS}))

    assert transactions == [(["create"] * 3, "ok")]
    assert reads == []
    assert (result.stored_events, result.duplicate_events) == (3, 0)
    assert_all_stored(ctx)


def test_more_than_a_transaction_of_new_profiles_takes_several(ctx, monkeypatch):
    transactions, reads = watch(monkeypatch, ctx.ucd.profiles.table)
    users = [{"user_id": f"v{i}", "attributes": {"k": i}} for i in range(250)]

    ctx.ucd.upsert(parse_upsert("acme", {"users": users}))

    probes = sorted(len(kinds) - 1 for kinds, outcome in transactions if kinds[-1] == "delete")
    creates = sorted(len(kinds) for kinds, outcome in transactions if kinds[-1] == "create" and outcome == "ok")
    assert probes == [52, 99, 99] and creates == [50, 100, 100] and reads == []
    assert all(outcome == "TableTransactionError" for kinds, outcome in transactions if kinds[-1] == "delete")
    assert all(ctx.ucd.profile("acme", f"v{i}")["attributes"] == {"k": i} for i in range(0, 250, 37))


def test_a_probe_writes_nothing_and_reads_only_from_the_first_stored_profile_on(ctx, clock, monkeypatch):
    """120 users, u51 stored: the first probe (u1-u99) stops at u51, so u1-u50 are known new and u51-u99
    are read; the second probe (u100-u120) finds them all new. Only the probes' answers are used."""
    users = people(120)
    UcdStore(ctx.storage, clock).upsert(parse_upsert("acme", {"users": [{"user_id": "u51", "attributes": {"x": 1}}]}))
    transactions, reads = watch(monkeypatch, ctx.ucd.profiles.table)

    ctx.ucd.upsert(parse_upsert("acme", {"users": users}))

    assert sorted(kinds.count("create") for kinds, _outcome in transactions if kinds[-1] == "delete") == [21, 99]
    assert sorted(reads) == sorted(f"u{i}" for i in range(51, 100))
    assert ctx.ucd.profile("acme", "u51")["attributes"] == {"x": 1, "email": "u51@x", "n": 51}
    assert ctx.ucd.profile("acme", "u50")["attributes"] == {"email": "u50@x", "n": 50}
    with pytest.raises(ResourceNotFoundError):
        ctx.ucd.profiles.table.get_entity("acme", "~probe")


def test_a_stored_profile_among_those_created_at_once_rolls_the_transaction_back_and_they_are_read(
    ctx, clock, monkeypatch
):
    UcdStore(ctx.storage, clock).upsert(parse_upsert("acme", {"users": [{"user_id": "u2", "attributes": {"x": 1}}]}))
    transactions, reads = watch(monkeypatch, ctx.ucd.profiles.table)

    ctx.ucd.upsert(parse_upsert("acme", {"users": USERS}))

    assert transactions == [(["create"] * 3, "TableTransactionError"), (["create"] * 2, "ok")]
    assert sorted(reads) == ["u1", "u2", "u3"]
    assert ctx.ucd.profile("acme", "u2")["attributes"] == {"x": 1, "email": "u2@x", "n": 2}
    assert ctx.ucd.profile("acme", "u3")["attributes"] == {"email": "u3@x", "n": 3}


def test_profiles_this_store_has_seen_are_not_probed_again(ctx, monkeypatch):
    ctx.ucd.upsert(parse_upsert("acme", {"users": USERS}))
    transactions, reads = watch(monkeypatch, ctx.ucd.profiles.table)

    again = ctx.ucd.upsert(parse_upsert("acme", {"users": USERS}))

    assert transactions == [] and sorted(reads) == ["u1", "u2", "u3"]
    assert (again.stored_events, again.duplicate_events) == (0, 3)
    assert_all_stored(ctx)


def nth_batch(n: int):
    """A rule condition: the n-th transaction (`$batch`) through the proxy, counted from 1."""
    seen = itertools.count(1)
    return lambda method, path, headers: next(seen) == n


# (users, which transaction): 3 users are created at once (transaction 1); 120 are probed (transactions
# 1 and 2, side by side), then created (3 and 4). Every profile transaction comes before any claim.
WHICH = {"created at once": (3, 1), "probe": (120, 1), "created after a probe": (120, 3)}


@pytest.mark.parametrize("which", list(WHICH))
@pytest.mark.parametrize("kind", ["reset_after", "reset_before", "500"])
def test_a_profile_transaction_that_fails_or_loses_its_answer_loses_nothing(
    ctx, clock, settings, table_proxy, azurite_connection, kind, which
):
    """`reset_after`: the transaction landed (a creation) or failed (a probe never lands) and its answer was
    lost; `reset_before` and 500: it did not land. After a probe its users are read; after a creation its
    users are read and merged on their own, and a landed profile merges to itself."""
    n, nth = WHICH[which]
    users = people(n)
    proxied = proxied_context(settings, clock, through(azurite_connection, "Table", table_proxy.url))
    table_proxy.add(Rule(kind, method="POST", path=r"\$batch", when=nth_batch(nth)))

    result = UcdStore(proxied.storage, clock).upsert(parse_upsert("acme", {"users": users}))

    assert table_proxy.injected[kind] == 1
    assert (result.stored_events, result.duplicate_events) == (n, 0)
    assert_all_stored(ctx, users)


def test_a_profile_created_concurrently_fails_the_transaction_and_both_merges_stay(ctx, clock, monkeypatch):
    """Another request creates u2 between this request's probe and its creation: that transaction rolls
    back whole (u1 and u3 are not in it either), and each profile is merged again, u2 onto the other's."""
    users = people(120)
    other = UcdStore(ctx.storage, clock)
    real_probe = ctx.ucd.profiles._probe_new
    raced = []

    def probe_then_race(account, drafts):
        absent = real_probe(account, drafts)
        raced.append(sorted(absent))
        other.upsert(parse_upsert("acme", {"users": [{"user_id": "u2", "attributes": {"plan": "pro"}}]}))
        return absent  # as found before the other request created u2

    monkeypatch.setattr(ctx.ucd.profiles, "_probe_new", probe_then_race)
    failed = []
    table = ctx.ucd.profiles.table
    real_submit = table.submit_transaction

    def submit(ops, **kw):
        try:
            return real_submit(ops, **kw)
        except Exception as exc:
            if ops[-1][0] != "delete":  # probes always fail: only creations count here
                failed.append((len(ops), type(exc).__name__))
            raise

    monkeypatch.setattr(table, "submit_transaction", submit)

    result = ctx.ucd.upsert(parse_upsert("acme", {"users": users}))

    assert raced == [sorted(f"u{i}" for i in range(1, 121))] and (100, "TableTransactionError") in failed
    assert (result.stored_events, result.duplicate_events) == (120, 0)
    assert ctx.ucd.profile("acme", "u2")["attributes"] == {"plan": "pro", "email": "u2@x", "n": 2}
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {"email": "u1@x", "n": 1}
    assert ctx.ucd.profile("acme", "u120")["attributes"] == {"email": "u120@x", "n": 120}
    assert attributes_on_rows(ctx) == {f"u{i}": f"u{i}@x" for i in range(1, 121)}
