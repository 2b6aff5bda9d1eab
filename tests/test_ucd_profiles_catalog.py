"""UCD profiles and catalog: anonymous and deleted users, attributes captured on events, the catalog per account."""

from __future__ import annotations

from datetime import timedelta

from exporter.ucd import UcdStore, parse_upsert
from tests.ucd_helpers import T0, call, ev, rows, run_together, upsert


def test_anonymous_users_are_stored_and_read(ctx):
    upsert(ctx, [{"user_id": "anon-7f3a", "events": [ev("email_open", campaign="c1")]}])
    [row] = rows(ctx, columns=["p:campaign"])
    assert row["user_id"] == "anon-7f3a" and row["p:campaign"] == "c1"
    assert ctx.ucd.profile("acme", "anon-7f3a") == {
        "user_id": "anon-7f3a",
        "attributes": {},
        "identifiers": {},
        "deleted": False,
    }


def test_deleted_users_keep_their_stored_events(ctx, clock):
    upsert(
        ctx,
        [
            {
                "user_id": "u/1#?",
                "identifiers": {"email": "a@x"},
                "attributes": {"email": "a@x", "plan": "pro"},
                "events": [ev(price=1), ev("view")],
            }
        ],
    )
    clock.advance(minutes=10)
    deleted = call(ctx, "ucd_delete_user", account="acme", user_id="u/1#?")
    assert deleted.status == 200 and deleted.body == {"account": "acme", "user_id": "u/1#?", "deleted": True}
    assert ctx.ucd.profile("acme", "u/1#?")["deleted"] is True
    got = rows(ctx, columns=["a:email", "a:plan", "p:price"])
    assert sorted((r["event_name"], r["a:email"], r["a:plan"], r["p:price"]) for r in got) == [
        ("purchase", "a@x", "pro", "1"),
        ("view", "a@x", "pro", None),
    ]


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


def test_a_merge_too_large_for_a_profile_refuses_the_request_before_any_profile_is_written(ctx):
    big = "x" * 20_000
    assert (
        call(ctx, "ucd_upsert", {"users": [{"user_id": "b", "attributes": {"one": big}}]}, account="acme").status == 200
    )
    body = {
        "users": [
            {
                "user_id": "a",
                "attributes": {"email": "a@example.com"},
                "events": [{"event_name": "e", "timestamp": "2026-11-28T10:00:00Z"}],
            },
            {"user_id": "b", "attributes": {"two": big}},
        ]
    }
    answer = call(ctx, "ucd_upsert", body, account="acme")
    assert answer.status == 400 and answer.body["error"]["field"] == "users[1].attributes"
    assert ctx.ucd.profile("acme", "a") is None, "no profile of the refused request was written"
    assert ctx.ucd.profile("acme", "b")["attributes"] == {"one": big}
    assert list(ctx.ucd.read_window("acme", T0 - timedelta(days=1), T0 + timedelta(days=1))) == []


def test_catalog_lists_event_names_params_and_attributes_per_account(ctx):
    upsert(
        ctx,
        [{"user_id": "u1", "attributes": {"email": "a@x"}, "events": [ev(price=1, currency="EUR"), ev("a/b#c?", x=1)]}],
    )
    upsert(
        ctx,
        [
            {
                "user_id": "u2",
                "attributes": {"plan": "pro", "email": "b@x"},
                "events": [ev(sku="s", price=2), ev("view")],
            }
        ],
    )
    upsert(
        ctx,
        [{"user_id": "u9", "attributes": {"secret": 1}, "events": [ev("other_account_event", y=1)]}],
        account="globex",
    )
    response = call(ctx, "ucd_catalog", account="acme")
    assert response.status == 200
    assert response.body == {
        "account": "acme",
        "events": {"a/b#c?": ["x"], "purchase": ["currency", "price", "sku"], "view": []},
        "param_types": {
            "a/b#c?": {"x": "integer"},
            "purchase": {"currency": "string", "price": "integer", "sku": "string"},
            "view": {},
        },
        "attributes": ["email", "plan"],
    }
    assert call(ctx, "ucd_catalog", account="globex").body["events"] == {"other_account_event": ["y"]}
    assert call(ctx, "ucd_catalog", account="Bad_Account").status == 400


def test_concurrent_catalog_and_profile_writers_lose_no_key(ctx, clock):
    """Eight requests extend the same catalog entries and profile at once: each lost race re-reads and merges again."""
    stores = [UcdStore(ctx.storage, clock) for _ in range(8)]
    requests = [
        parse_upsert("acme", {"users": [{"user_id": "u1", "attributes": {f"k{i}": i}, "events": [ev(**{f"p{i}": i})]}]})
        for i in range(8)
    ]
    run_together(lambda i: stores[i].upsert(requests[i]), 8)
    assert ctx.ucd.catalog("acme")["events"] == {"purchase": sorted(f"p{i}" for i in range(8))}
    assert ctx.ucd.catalog("acme")["attributes"] == sorted(f"k{i}" for i in range(8))
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {f"k{i}": i for i in range(8)}


def test_a_store_extends_the_catalog_only_with_names_and_keys_it_has_not_seen_there(ctx, monkeypatch):
    """The catalog only grows: once a store has extended it with a name and its keys, a request that
    brings nothing new leaves it alone (no reads), and one new key extends it again."""
    extended = []
    real = ctx.ucd.catalogs.write
    monkeypatch.setattr(
        ctx.ucd.catalogs, "write", lambda account, users: (extended.append(account), real(account, users))
    )
    upsert(ctx, [{"user_id": "u1", "attributes": {"email": "a@x"}, "events": [ev(price=1)]}])
    upsert(
        ctx, [{"user_id": "u2", "attributes": {"email": "b@x"}, "events": [ev(price=2), ev(ts="2026-11-28T09:01:00Z")]}]
    )
    assert extended == ["acme"]
    upsert(ctx, [{"user_id": "u3", "events": [ev(price=3, currency="EUR")]}])
    upsert(ctx, [{"user_id": "u4", "attributes": {"plan": "pro"}, "events": [ev(price=4)]}])
    upsert(ctx, [{"user_id": "u1", "events": [ev("view")]}])
    upsert(ctx, [{"user_id": "u1", "events": [ev(price=5)]}], account="globex")
    assert extended == ["acme"] * 4 + ["globex"]
    assert ctx.ucd.catalog("acme") == {
        "account": "acme",
        "events": {"purchase": ["currency", "price"], "view": []},
        "param_types": {"purchase": {"currency": "string", "price": "integer"}, "view": {}},
        "attributes": ["email", "plan"],
    }
    assert ctx.ucd.catalog("globex")["events"] == {"purchase": ["price"]}
    upsert(ctx, [{"user_id": "u5", "events": [ev(price=2.5)]}])
    assert extended == ["acme"] * 4 + ["globex", "acme"], "a wider kind of a known key extends it again"
    upsert(ctx, [{"user_id": "u6", "events": [ev(price=7)]}])
    assert len(extended) == 6, "a kind already seen here does not"
    assert ctx.ucd.catalog("acme")["param_types"]["purchase"] == {"currency": "string", "price": "number"}
