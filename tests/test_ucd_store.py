"""The UCD store on Azurite: stored rows not transmissions, entry time, profiles, catalog, window reads."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pyarrow as pa

from exporter.ucd import UcdStore, parse_upsert
from exporter.ucd.segments import FIXED_COLUMNS
from tests.conftest import T0, call, run_together

TS = "2026-11-28T09:00:00Z"
WIDE = (T0 - timedelta(hours=12), T0 + timedelta(hours=12))


def ev(name="purchase", ts=TS, **params):
    event = {"event_name": name, "timestamp": ts}
    if params:
        event["event_params"] = params
    return event


def upsert(ctx, users, account="acme"):
    response = call(ctx, "ucd_upsert", {"users": users}, account=account)
    assert response.status == 200, response.body
    body = response.body
    assert body["stored_events"] + body["duplicate_events"] == body["received_events"]
    return body


def rows(ctx, start=WIDE[0], end=WIDE[1], account="acme", **kw):
    return [r for batch in ctx.ucd.read_window(account, start, end, **kw) for r in batch.to_pylist()]


def ids(ctx, **kw):
    return [r["event_id"] for r in rows(ctx, **kw)]


def eid(account, user_id, event):
    return parse_upsert(account, {"users": [{"user_id": user_id, "events": [event]}]}).users[0].events[0].event_id


# ------------------------------------------------------------------ stored rows, not transmissions


def test_dedup_within_one_request(ctx):
    a = ev(price=9.5, currency="EUR")
    a_other_spelling = ev(ts="2026-11-28T09:00:00.000+00:00", currency="EUR", price=9.5)
    a_offset = ev(ts="2026-11-28T10:00:00+01:00", price=9.5, currency="EUR")
    b = ev(price=9.5, currency="USD")  # different params: a different event
    body = upsert(ctx, [
        {"user_id": "u1", "events": [a, a, a_other_spelling]},
        {"user_id": "u1", "events": [a_offset, b]},  # the same user twice in one request
        {"user_id": "u2", "events": [a]},  # the same event of another user is another event
    ])
    assert body == {"received_events": 6, "stored_events": 3, "duplicate_events": 3}
    got = rows(ctx)
    assert sorted(r["event_id"] for r in got) == sorted({eid("acme", "u1", a), eid("acme", "u1", b), eid("acme", "u2", a)})
    assert {(r["user_id"], r["timestamp"]) for r in got} == {("u1", "2026-11-28T09:00:00.000Z"), ("u2", "2026-11-28T09:00:00.000Z")}
    assert len(ctx.ucd.segments("acme", *WIDE)) == 1


def test_dedup_across_requests(ctx, clock):
    a, b = ev(price=1), ev("view", page="/")
    assert upsert(ctx, [{"user_id": "u1", "events": [a, b]}]) == {"received_events": 2, "stored_events": 2, "duplicate_events": 0}
    clock.advance(minutes=5)
    a_again = ev(ts="2026-11-28T09:00:00+00:00", price=1)
    c = ev(price=2)
    assert upsert(ctx, [{"user_id": "u1", "events": [a_again, b, c]}]) == {"received_events": 3, "stored_events": 1, "duplicate_events": 2}
    clock.advance(hours=3)
    assert upsert(ctx, [{"user_id": "u1", "events": [a, b, c]}]) == {"received_events": 3, "stored_events": 0, "duplicate_events": 3}
    got = ids(ctx)
    assert sorted(got) == sorted(eid("acme", "u1", e) for e in (a, b, c))
    # a request that stores nothing commits no segment
    assert [s.entry_time for s in ctx.ucd.segments("acme", *WIDE)] == [T0, T0 + timedelta(minutes=5)]


def test_the_same_event_in_another_account_is_another_row(ctx):
    a = ev(price=1)
    assert upsert(ctx, [{"user_id": "u1", "events": [a]}])["stored_events"] == 1
    assert upsert(ctx, [{"user_id": "u1", "events": [a]}], account="globex")["stored_events"] == 1
    assert len(ids(ctx)) == 1 and len(ids(ctx, account="globex")) == 1


def test_a_hundred_sends_store_one_row(ctx, clock):
    event = ev(price=9.5, nested={"b": [1, 2], "a": None})
    totals = Counter()
    for i in range(100):
        clock.advance(seconds=7)
        spelling = dict(event, timestamp="2026-11-28T09:00:00Z" if i % 2 else "2026-11-28T09:00:00.000+00:00")
        totals.update(upsert(ctx, [{"user_id": "u1", "events": [spelling]}]))
    assert totals == {"received_events": 100, "stored_events": 1, "duplicate_events": 99}
    assert upsert(ctx, [{"user_id": "u1", "events": [event] * 100}]) == {"received_events": 100, "stored_events": 0, "duplicate_events": 100}
    assert ids(ctx) == [eid("acme", "u1", event)]
    assert len(ctx.ucd.segments("acme", *WIDE)) == 1


def test_concurrent_duplicate_upserts_store_each_event_once(ctx, clock):
    pool = [ev(ts=f"2026-11-28T09:{m:02d}:00Z", n=m) for m in range(40)]
    bodies = [[pool[(8 * i + k) % 40] for k in range(20)] for i in range(8)]  # each event in 4 bodies
    stores = [UcdStore(ctx.storage, clock) for _ in range(8)]  # one store per worker, as on separate instances
    requests = [parse_upsert("acme", {"users": [{"user_id": "u1", "events": body}]}) for body in bodies]
    results = run_together(lambda i: stores[i].upsert(requests[i]), 8)
    assert all(r.received_events == 20 and r.stored_events + r.duplicate_events == 20 for r in results)
    assert sum(r.stored_events for r in results) == 40
    counts = Counter(ids(ctx))
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert set(counts) == {eid("acme", "u1", e) for e in pool}


# ------------------------------------------------------------------ entry time


def test_windows_select_by_entry_time_not_event_time(ctx, clock):
    clock.set(T0 + timedelta(hours=5, minutes=12))
    old = ev(ts=(T0 - timedelta(days=3)).isoformat(), price=1)
    upsert(ctx, [{"user_id": "u1", "events": [old]}])
    today = rows(ctx, start=T0 + timedelta(hours=5), end=T0 + timedelta(hours=6))
    assert [(r["event_id"], r["timestamp"]) for r in today] == [(eid("acme", "u1", old), "2026-11-25T10:00:00.000Z")]
    three_days_ago = T0 - timedelta(days=3)
    assert rows(ctx, start=three_days_ago, end=three_days_ago + timedelta(hours=1)) == []
    assert rows(ctx, start=T0 + timedelta(hours=4), end=T0 + timedelta(hours=5, minutes=12)) == []
    assert len(rows(ctx, start=T0 + timedelta(hours=5, minutes=12), end=T0 + timedelta(hours=5, minutes=12, milliseconds=1))) == 1
    [segment] = ctx.ucd.segments("acme", *WIDE)
    assert segment.entry_time == clock.now()


# ------------------------------------------------------------------ users


def test_anonymous_users_are_stored_and_read(ctx):
    upsert(ctx, [{"user_id": "anon-7f3a", "events": [ev("email_open", campaign="c1")]}])
    [row] = rows(ctx, columns=["p:campaign"])
    assert row["user_id"] == "anon-7f3a" and row["p:campaign"] == "c1"
    assert ctx.ucd.profile("acme", "anon-7f3a") == {"user_id": "anon-7f3a", "attributes": {}, "identifiers": {}, "deleted": False}


def test_deleted_users_keep_their_stored_events(ctx, clock):
    upsert(ctx, [{"user_id": "u/1#?", "identifiers": {"email": "a@x"}, "attributes": {"email": "a@x", "plan": "pro"},
                  "events": [ev(price=1), ev("view")]}])
    clock.advance(minutes=10)
    deleted = call(ctx, "ucd_delete_user", account="acme", user_id="u/1#?")
    assert deleted.status == 200 and deleted.body == {"account": "acme", "user_id": "u/1#?", "deleted": True}
    assert ctx.ucd.profile("acme", "u/1#?")["deleted"] is True
    got = rows(ctx, columns=["a:email", "a:plan", "p:price"])
    assert sorted((r["event_name"], r["a:email"], r["a:plan"], r["p:price"]) for r in got) == [
        ("purchase", "a@x", "pro", "1"), ("view", "a@x", "pro", None)]


def test_deleting_an_unknown_user_is_404(ctx):
    upsert(ctx, [{"user_id": "u1", "events": [ev()]}])
    for account, user_id in (("acme", "nobody"), ("globex", "u1")):
        response = call(ctx, "ucd_delete_user", account=account, user_id=user_id)
        assert response.status == 404, response.body
        assert response.body["error"]["code"] == "not_found"
    assert ctx.ucd.profile("acme", "u1")["deleted"] is False


def test_events_carry_the_attributes_in_force_when_stored(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "attributes": {"email": "a@x", "plan": "free", "vip": True}, "events": [ev(n=1)]}])
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u1", "events": [ev(n=2)]}])  # events only: the stored profile is captured
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u1", "attributes": {"plan": "pro", "score": 3.5}, "events": [ev(n=3)]}])
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u2", "events": [ev(n=4)]}])
    got = rows(ctx, columns=["p:n", "a:email", "a:plan", "a:vip", "a:score"])
    assert [(r["user_id"], r["p:n"], r["a:email"], r["a:plan"], r["a:vip"], r["a:score"]) for r in got] == [
        ("u1", "1", "a@x", "free", "true", None),
        ("u1", "2", "a@x", "free", "true", None),
        ("u1", "3", "a@x", "pro", "true", "3.5"),
        ("u2", "4", None, None, None, None),
    ]
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {"email": "a@x", "plan": "pro", "vip": True, "score": 3.5}


def test_catalog_lists_event_names_params_and_attributes_per_account(ctx):
    upsert(ctx, [{"user_id": "u1", "attributes": {"email": "a@x"}, "events": [ev(price=1, currency="EUR"), ev("a/b#c?", x=1)]}])
    upsert(ctx, [{"user_id": "u2", "attributes": {"plan": "pro", "email": "b@x"}, "events": [ev(sku="s", price=2), ev("view")]}])
    upsert(ctx, [{"user_id": "u9", "attributes": {"secret": 1}, "events": [ev("other_account_event", y=1)]}], account="globex")
    response = call(ctx, "ucd_catalog", account="acme")
    assert response.status == 200
    assert response.body == {
        "account": "acme",
        "events": {"a/b#c?": ["x"], "purchase": ["currency", "price", "sku"], "view": []},
        "attributes": ["email", "plan"],
    }
    assert call(ctx, "ucd_catalog", account="globex").body["events"] == {"other_account_event": ["y"]}
    assert call(ctx, "ucd_catalog", account="Bad_Account").status == 400


def test_concurrent_catalog_and_profile_writers_lose_no_key(ctx, clock):
    """Eight requests extend the same catalog entries and profile at once: each lost race re-reads and merges again."""
    stores = [UcdStore(ctx.storage, clock) for _ in range(8)]
    requests = [parse_upsert("acme", {"users": [{"user_id": "u1", "attributes": {f"k{i}": i},
                                                 "events": [ev(**{f"p{i}": i})]}]}) for i in range(8)]
    run_together(lambda i: stores[i].upsert(requests[i]), 8)
    assert ctx.ucd.catalog("acme")["events"] == {"purchase": sorted(f"p{i}" for i in range(8))}
    assert ctx.ucd.catalog("acme")["attributes"] == sorted(f"k{i}" for i in range(8))
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {f"k{i}": i for i in range(8)}


# ------------------------------------------------------------------ reading windows


def _three_segments(ctx, clock):
    for minute, count in ((1, 5), (2, 6), (3, 4)):
        clock.set(T0 + timedelta(minutes=minute))
        upsert(ctx, [{"user_id": f"u{minute}", "events": [ev(ts=f"2026-11-28T08:0{k}:00Z", k=k) for k in range(count)]}])


def test_read_order_is_entry_time_then_event_id(ctx, clock):
    _three_segments(ctx, clock)
    segments = ctx.ucd.segments("acme", *WIDE)
    assert [s.entry_time for s in segments] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    got = rows(ctx)
    entry_of_user = {f"u{m}": T0 + timedelta(minutes=m) for m in (1, 2, 3)}
    keys = [(entry_of_user[r["user_id"]], r["event_id"]) for r in got]
    assert len(keys) == 15 and keys == sorted(keys)
    assert [r["user_id"] for r in got] == ["u1"] * 5 + ["u2"] * 6 + ["u3"] * 4
    assert rows(ctx) == got and rows(ctx, batch_rows=2, prefetch=1) == got  # deterministic, whatever the batching


def test_a_window_reads_only_its_own_segments(ctx, clock, monkeypatch):
    entries = [T0 - timedelta(minutes=30), T0 + timedelta(minutes=10), T0 + timedelta(minutes=50),
               T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=20), T0 + timedelta(hours=3)]
    for i, when in enumerate(entries):
        clock.set(when)
        upsert(ctx, [{"user_id": f"u{i}", "events": [ev(i=i)]}])
    path_of = {s.entry_time: s.path for s in ctx.ucd.segments("acme", *WIDE)}
    assert list(path_of) == entries

    downloaded = []
    real = ctx.ucd.reader._download
    monkeypatch.setattr(ctx.ucd.reader, "_download", lambda path: downloaded.append(path) or real(path))

    def window(start, end):
        downloaded.clear()
        refs = ctx.ucd.segments("acme", start, end)
        users = [r["user_id"] for r in rows(ctx, start=start, end=end)]
        assert sorted(downloaded) == sorted(r.path for r in refs)
        return [r.entry_time for r in refs], users

    assert window(T0, T0 + timedelta(hours=1)) == ([entries[1], entries[2]], ["u1", "u2"])
    assert window(T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == ([entries[3], entries[4]], ["u3", "u4"])
    assert window(T0 + timedelta(minutes=15), T0 + timedelta(minutes=55)) == ([entries[2]], ["u2"])
    assert window(T0 + timedelta(hours=2), T0 + timedelta(hours=3)) == ([], [])
    assert window(T0 - timedelta(hours=1), T0 + timedelta(hours=4)) == (entries, [f"u{i}" for i in range(6)])

    # listing is by hour prefix: a window inside one hour never lists another hour
    listed = []
    real_list = ctx.ucd.container.list_blobs
    monkeypatch.setattr(ctx.ucd.container, "list_blobs", lambda **kw: listed.append(kw["name_starts_with"]) or real_list(**kw))
    ctx.ucd.segments("acme", T0 + timedelta(minutes=15), T0 + timedelta(minutes=55))
    assert listed == ["acme/events/2026/11/28/10/"]


def test_event_name_filter(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "events": [ev(k=1), ev("view", k=2), ev("email_open", k=3), ev(k=4)]}])
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u2", "events": [ev("view", k=5)]}])
    everything = rows(ctx)
    assert len(everything) == 5
    purchases = rows(ctx, event_names=["purchase"])
    assert sorted(r["event_name"] for r in purchases) == ["purchase", "purchase"]
    assert purchases == [r for r in everything if r["event_name"] == "purchase"]  # order kept
    assert {r["event_name"] for r in rows(ctx, event_names={"view", "email_open"})} == {"view", "email_open"}
    assert len(rows(ctx, event_names=["view", "email_open"])) == 3
    assert rows(ctx, event_names=[]) == []
    assert rows(ctx, event_names=["nope"]) == []


def test_column_selection_with_missing_columns_as_nulls(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "attributes": {"email": "a@x"}, "events": [ev(price=9.5, currency="EUR"), ev(price=1)]}])
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u2", "events": [ev("view", page="/")]}])  # a segment without price or email columns
    columns = ["p:price", "a:email", "p:missing", "event_name", "a:missing"]
    batches = list(ctx.ucd.read_window("acme", *WIDE, columns=columns))
    expected = list(FIXED_COLUMNS) + ["p:price", "a:email", "p:missing", "a:missing"]
    assert batches and all(b.schema.names == expected for b in batches)
    assert all(f.type == pa.string() for b in batches for f in b.schema)
    got = pa.Table.from_batches(batches).to_pylist()
    assert sorted((r["user_id"], r["p:price"], r["a:email"], r["p:missing"], r["a:missing"]) for r in got) == [
        ("u1", "1", "a@x", None, None), ("u1", "9.5", "a@x", None, None), ("u2", None, None, None, None)]
    assert all(b.schema.names == list(FIXED_COLUMNS) for b in ctx.ucd.read_window("acme", *WIDE))


def test_batches_are_bounded_by_batch_rows(ctx, clock):
    upsert(ctx, [{"user_id": "u1", "events": [ev(ts=f"2026-11-28T08:{m:02d}:00Z") for m in range(25)]}])
    clock.advance(minutes=1)
    upsert(ctx, [{"user_id": "u2", "events": [ev(ts=f"2026-11-28T08:{m:02d}:00Z") for m in range(7)]}])
    batches = list(ctx.ucd.read_window("acme", *WIDE, batch_rows=10))
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == 32 and max(sizes) <= 10 and len(batches) >= 4, sizes
    filtered = list(ctx.ucd.read_window("acme", *WIDE, batch_rows=4, event_names=["purchase"]))
    assert sum(b.num_rows for b in filtered) == 32 and max(b.num_rows for b in filtered) <= 4


def test_a_merge_too_large_for_a_profile_refuses_the_request_before_any_profile_is_written(ctx):
    big = "x" * 20_000
    assert call(ctx, "ucd_upsert", {"users": [{"user_id": "b", "attributes": {"one": big}}]}, account="acme").status == 200
    body = {"users": [
        {"user_id": "a", "attributes": {"email": "a@example.com"}, "events": [{"event_name": "e", "timestamp": "2026-11-28T10:00:00Z"}]},
        {"user_id": "b", "attributes": {"two": big}},
    ]}
    answer = call(ctx, "ucd_upsert", body, account="acme")
    assert answer.status == 400 and answer.body["error"]["field"] == "users[1].attributes"
    assert ctx.ucd.profile("acme", "a") is None, "no profile of the refused request was written"
    assert ctx.ucd.profile("acme", "b")["attributes"] == {"one": big}
    assert list(ctx.ucd.read_window("acme", T0 - timedelta(days=1), T0 + timedelta(days=1))) == []
