"""UCD upsert validation: every malformed request gets a 400 naming the field, and nothing is stored
(bad input, docs/invariants.md).

Pure tests of `parse_upsert` / `load_json_body`, then the same cases through the API against Azurite,
each checking that no profile, catalog entry, intent, dedup claim or segment blob was written.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from exporter import api, validation
from exporter.errors import InputError
from exporter.storage import UCD_CATALOG_TABLE, UCD_EVENTS_TABLE, UCD_PROFILES_TABLE, UCD_SEGMENTS_TABLE
from exporter.ucd import request as ucd_request
from exporter.ucd.request import parse_upsert
from exporter.ucd.values import event_id
from exporter.validation import load_json_body
from tests.ucd_helpers import T0, call

TS = "2026-11-28T10:00:00Z"


def good_event(**overrides):
    event = {"event_name": "purchase", "timestamp": TS, "event_params": {"price": 9.5}}
    event.update(overrides)
    return event


def body_with(user_overrides=None, event=None, *, drop_event_key=None, drop_user_key=None):
    """A request with one valid user and a second user whose first event (or the user) is broken."""
    bad_event = good_event() if event is None else event
    if drop_event_key:
        bad_event.pop(drop_event_key)
    bad_user = {"user_id": "u2", "attributes": {"plan": "pro"}, "events": [bad_event]}
    bad_user.update(user_overrides or {})
    if drop_user_key:
        bad_user.pop(drop_user_key)
    return {
        "users": [
            {
                "user_id": "u1",
                "attributes": {"email": "a@example.com"},
                "events": [good_event(), good_event(event_name="view")],
            },
            bad_user,
        ]
    }


# ------------------------------------------------------------------ pure: load_json_body


@pytest.mark.parametrize(
    "raw",
    [b"{", b"{'users': []}", b"[1,", b"\xff\xfe{}", b"nul", '{"users": [}'],
    ids=["open-brace", "single-quotes", "truncated-list", "bad-utf8", "nul", "bad-list"],
)
def test_load_json_body_refuses_malformed_json(raw):
    with pytest.raises(InputError) as err:
        load_json_body(raw)
    assert err.value.field == "body"
    assert "not valid JSON" in err.value.reason


@pytest.mark.parametrize("raw", [b"", b"   \n"])
def test_load_json_body_refuses_an_empty_body(raw):
    with pytest.raises(InputError) as err:
        load_json_body(raw)
    assert err.value.field == "body" and "empty" in err.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        b'{"users": [{"user_id": "u", "attributes": {"x": NaN}}]}',
        b'{"users": [{"user_id": "u", "attributes": {"x": Infinity}}]}',
        b'{"users": [{"user_id": "u", "attributes": {"x": -Infinity}}]}',
        b'{"users": [{"user_id": "u", "attributes": {"x": 1e999}}]}',  # parses as inf without a float hook
        b'{"users": [{"user_id": "u", "attributes": {"x": -1e400}}]}',
    ],
    ids=["nan", "infinity", "-infinity", "1e999", "-1e400"],
)
def test_load_json_body_refuses_non_finite_numbers(raw):
    with pytest.raises(InputError) as err:
        load_json_body(raw)
    assert err.value.field == "body"


def test_load_json_body_accepts_finite_numbers_and_str():
    assert load_json_body('{"a": 1.5e300, "b": -2, "c": "NaN"}') == {"a": 1.5e300, "b": -2, "c": "NaN"}


def test_load_json_body_enforces_the_byte_limit():
    raw = json.dumps({"users": [{"user_id": "u" * 20}]}).encode()
    assert load_json_body(raw, max_bytes=len(raw)) == {"users": [{"user_id": "u" * 20}]}
    with pytest.raises(InputError) as err:
        load_json_body(raw, max_bytes=len(raw) - 1)
    assert err.value.field == "body" and "limit" in err.value.reason


# ------------------------------------------------------------------ pure: parse_upsert


def test_parse_upsert_normalises_timestamps_and_renders_params():
    req = parse_upsert(
        "acme",
        {
            "users": [
                {
                    "user_id": "u1",
                    "identifiers": {"email": "a@x"},
                    "attributes": {"plan": "pro"},
                    "events": [
                        {
                            "event_name": "purchase",
                            "timestamp": "2026-11-28T12:00:00.1239+02:00",
                            "event_params": {
                                "price": 9.5,
                                "n": 3,
                                "ok": True,
                                "no": False,
                                "none": None,
                                "nested": {"b": 1, "a": [1, "x"]},
                                "s": "t",
                            },
                        },
                    ],
                },
                {"user_id": "u2"},
            ]
        },
    )
    assert req.account == "acme" and req.received_events == 1
    assert [u.user_id for u in req.users] == ["u1", "u2"]
    assert req.users[1].events == [] and req.users[1].attributes == {} and req.users[1].identifiers == {}
    e = req.users[0].events[0]
    assert e.timestamp == "2026-11-28T10:00:00.123Z"  # UTC, milliseconds, truncated
    assert e.user_id == "u1" and e.event_name == "purchase"
    assert e.params == {
        "price": "9.5",
        "n": "3",
        "ok": "true",
        "no": "false",
        "none": None,
        "nested": '{"a":[1,"x"],"b":1}',
        "s": "t",
    }
    assert len(e.event_id) == 32 and int(e.event_id, 16) >= 0


def test_event_identity_is_the_instant_not_its_spelling():
    def eid(ts, params=None, name="purchase", user="u1", account="acme"):
        req = parse_upsert(
            account,
            {
                "users": [
                    {
                        "user_id": user,
                        "events": [{"event_name": name, "timestamp": ts, "event_params": params or {"a": 1, "b": "x"}}],
                    }
                ]
            },
        )
        return req.users[0].events[0].event_id

    base = eid("2026-11-28T10:00:00Z")
    assert eid("2026-11-28T10:00:00+00:00") == base
    assert eid("2026-11-28T11:00:00.000+01:00") == base
    with pytest.raises(InputError):
        eid("2026-11-28T10:00:00")  # no offset: ambiguous, refused
    assert eid("2026-11-28T10:00:00.0004Z") == base  # identity is to the millisecond
    assert eid("2026-11-28T10:00:00Z", {"b": "x", "a": 1}) == base  # key order is irrelevant
    assert eid("2026-11-28T10:00:00.001Z") != base
    assert eid("2026-11-28T10:00:00Z", {"a": 2, "b": "x"}) != base
    assert eid("2026-11-28T10:00:00Z", {"a": "1", "b": "x"}) != base
    assert eid("2026-11-28T10:00:00Z", name="view") != base
    assert eid("2026-11-28T10:00:00Z", user="u2") != base
    assert eid("2026-11-28T10:00:00Z", account="other") != base
    assert base == event_id("acme", "u1", "purchase", int(T0.timestamp()) * 1000, {"a": 1, "b": "x"})


BAD_CASES = [
    # (id, body, field)
    ("body-list", [], "body"),
    ("body-string", "users", "body"),
    ("body-null", None, "body"),
    ("users-missing", {}, "users"),
    ("users-empty", {"users": []}, "users"),
    ("users-object", {"users": {"user_id": "u1"}}, "users"),
    ("unknown-top-field", {"users": [{"user_id": "u1"}], "extra": 1}, "extra"),
    ("user-not-object", {"users": [{"user_id": "u1"}, "u2"]}, "users[1]"),
    ("unknown-user-field", body_with({"nickname": "x"}), "users[1].nickname"),
    ("user-id-missing", body_with(drop_user_key="user_id"), "users[1].user_id"),
    ("user-id-empty", body_with({"user_id": ""}), "users[1].user_id"),
    ("user-id-blank", body_with({"user_id": "   "}), "users[1].user_id"),
    ("user-id-number", body_with({"user_id": 7}), "users[1].user_id"),
    ("user-id-control-char", body_with({"user_id": "a\nb"}), "users[1].user_id"),
    ("user-id-too-long", body_with({"user_id": "u" * 257}), "users[1].user_id"),
    ("user-id-too-many-bytes", body_with({"user_id": "\u4e2d" * 256}), "users[1].user_id"),
    ("user-id-lone-surrogate", body_with({"user_id": "a\ud800"}), "users[1].user_id"),
    ("attributes-list", body_with({"attributes": ["plan"]}), "users[1].attributes"),
    ("attributes-string", body_with({"attributes": "plan=pro"}), "users[1].attributes"),
    ("attributes-empty-key", body_with({"attributes": {"": 1}}), "users[1].attributes key"),
    ("attributes-too-large", body_with({"attributes": {"bio": "x" * 30_001}}), "users[1].attributes"),
    (
        "attribute-value-lone-surrogate",
        body_with({"attributes": {"bio": ["ok", {"k": "\udc00"}]}}),
        "users[1].attributes.bio",
    ),
    ("identifiers-list", body_with({"identifiers": [1]}), "users[1].identifiers"),
    ("events-object", body_with({"events": {"event_name": "x"}}), "users[1].events"),
    ("events-string", body_with({"events": "purchase"}), "users[1].events"),
    ("event-not-object", body_with({"events": [good_event(), "purchase"]}), "users[1].events[1]"),
    ("unknown-event-field", body_with(event=good_event(price=9)), "users[1].events[0].price"),
    ("event-name-missing", body_with(drop_event_key="event_name"), "users[1].events[0].event_name"),
    ("event-name-empty", body_with(event=good_event(event_name="")), "users[1].events[0].event_name"),
    ("event-name-null", body_with(event=good_event(event_name=None)), "users[1].events[0].event_name"),
    (
        "event-name-too-many-bytes",
        body_with(event=good_event(event_name="\u00e9" * 200)),
        "users[1].events[0].event_name",
    ),
    ("timestamp-missing", body_with(drop_event_key="timestamp"), "users[1].events[0].timestamp"),
    *(
        (f"timestamp-{name}", body_with(event=good_event(timestamp=ts)), "users[1].events[0].timestamp")
        for name, ts in [
            ("null", None),
            ("empty", ""),
            ("words", "yesterday"),
            ("number", 1795860000),
            # Whitespace around a timestamp is refused, not trimmed (docs/architecture.md, the upsert).
            ("surrounding-spaces", " 2026-11-28T10:00:00Z "),
            ("trailing-newline", "2026-11-28T10:00:00Z\n"),
            ("leading-tab", "\t2026-11-28T10:00:00Z"),
            # Dates that do not exist, or that UTC cannot hold.
            ("month-13", "2026-13-01T00:00:00Z"),
            ("before-epoch", "1969-12-31T23:59:59Z"),
            ("underflows-utc", "0001-01-01T00:00:00+01:00"),
            ("overflows-utc", "9999-12-31T23:59:59-01:00"),
        ]
    ),
    ("params-list", body_with(event=good_event(event_params=["price"])), "users[1].events[0].event_params"),
    ("params-number", body_with(event=good_event(event_params=3)), "users[1].events[0].event_params"),
    (
        "params-control-key",
        body_with(event=good_event(event_params={"a\tb": 1})),
        "users[1].events[0].event_params key",
    ),
    (
        "param-value-lone-surrogate",
        body_with(event=good_event(event_params={"x": "\ud83d"})),
        "users[1].events[0].event_params.x",
    ),
]


@pytest.mark.parametrize("body,field", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_parse_upsert_names_the_bad_field(body, field):
    with pytest.raises(InputError) as err:
        parse_upsert("acme", body)
    assert err.value.field == field
    assert api.http_status(err.value) == 400


@pytest.mark.parametrize("account", ["Acme", "ac_me", "a", "-acme", "acme/x", "", "a" * 64, None, 7])
def test_parse_upsert_refuses_a_bad_account(account):
    with pytest.raises(InputError) as err:
        parse_upsert(account, {"users": [{"user_id": "u1"}]})
    assert err.value.field == "account"


@pytest.mark.parametrize("account", ["acme", "a1", "acme-eu-2", "0x", "a" * 63])
def test_parse_upsert_accepts_good_accounts(account):
    assert parse_upsert(account, {"users": [{"user_id": "u1"}]}).account == account


def test_parse_upsert_limits_events_across_users(monkeypatch):
    monkeypatch.setattr(ucd_request, "MAX_EVENTS", 3)
    two = [good_event(timestamp=f"2026-11-28T10:00:0{i}Z") for i in range(2)]
    assert (
        parse_upsert(
            "acme", {"users": [{"user_id": "u1", "events": two[:1]}, {"user_id": "u2", "events": two}]}
        ).received_events
        == 3
    )
    with pytest.raises(InputError) as err:
        parse_upsert("acme", {"users": [{"user_id": "u1", "events": two}, {"user_id": "u2", "events": two}]})
    assert err.value.field == "users[1].events"


def test_parse_upsert_limits_users(monkeypatch):
    monkeypatch.setattr(ucd_request, "MAX_USERS", 2)
    parse_upsert("acme", {"users": [{"user_id": "u1"}, {"user_id": "u2"}]})
    with pytest.raises(InputError) as err:
        parse_upsert("acme", {"users": [{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u3"}]})
    assert err.value.field == "users"


def test_parse_upsert_accepts_optional_parts_as_null():
    req = parse_upsert("acme", {"users": [{"user_id": "u1", "identifiers": None, "attributes": None, "events": None}]})
    assert req.received_events == 0 and req.users[0].attributes == {}


# ------------------------------------------------------------------ API: 400, and nothing stored


def assert_nothing_stored(ctx, account="acme"):
    for table in (UCD_PROFILES_TABLE, UCD_CATALOG_TABLE, UCD_SEGMENTS_TABLE, UCD_EVENTS_TABLE):
        assert list(ctx.storage.table(table).list_entities()) == [], f"{table} is not empty"
    assert list(ctx.storage.ucd_container().list_blobs()) == []
    assert ctx.ucd.profile(account, "u1") is None and ctx.ucd.profile(account, "u2") is None
    assert ctx.ucd.catalog(account) == {"account": account, "events": {}, "param_types": {}, "attributes": []}


def assert_refused(response, field):
    assert response.status == 400, response.body
    assert response.body["error"]["code"] == "invalid_input"
    assert response.body["error"]["field"] == field
    assert response.body["error"]["message"].startswith(f"{field}: ")


@pytest.mark.parametrize("body,field", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_api_refuses_bad_input_and_stores_nothing(ctx, body, field):
    assert_refused(call(ctx, "ucd_upsert", json.dumps(body).encode(), account="acme"), field)
    assert_nothing_stored(ctx)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"users": [{"user_id": "u1", "events": [',
        b"",
        b'{"users": [{"user_id": "u1", "attributes": {"score": NaN}}]}',
        b'{"users": [{"user_id": "u1", "events": [{"event_name": "e", "timestamp": "2026-11-28T10:00:00Z", "event_params": {"x": 1e999}}]}]}',
        b'\xef\xbb\xbf\xff{"users": []}',
    ],
    ids=["truncated", "empty", "nan", "overflowing-float", "bad-utf8"],
)
def test_api_refuses_unparseable_bodies_and_stores_nothing(ctx, raw):
    assert_refused(call(ctx, "ucd_upsert", raw, account="acme"), "body")
    assert_nothing_stored(ctx)


def test_api_refuses_an_over_large_body(ctx):
    raw = b'{"users": [{"user_id": "u1"}]' + b" " * validation.MAX_BODY_BYTES + b"}"
    assert_refused(call(ctx, "ucd_upsert", raw, account="acme"), "body")
    assert_nothing_stored(ctx)


def test_api_refuses_more_events_than_the_limit(ctx, monkeypatch):
    monkeypatch.setattr(ucd_request, "MAX_EVENTS", 4)
    events = [good_event(timestamp=f"2026-11-28T10:00:0{i}Z") for i in range(3)]
    body = {
        "users": [{"user_id": "u1", "attributes": {"a": 1}, "events": events}, {"user_id": "u2", "events": events[:2]}]
    }
    assert_refused(call(ctx, "ucd_upsert", body, account="acme"), "users[1].events")
    assert_nothing_stored(ctx)
    # At the limit it is accepted: the refusal above was the limit, not the body.
    body["users"][1]["events"] = events[:1]
    assert call(ctx, "ucd_upsert", body, account="acme").body == {
        "received_events": 4,
        "stored_events": 4,
        "duplicate_events": 0,
    }


@pytest.mark.parametrize("account", ["Acme", "ac_me", "ACME", "x"])
def test_api_refuses_a_bad_account_and_stores_nothing(ctx, account):
    body = {"users": [{"user_id": "u1", "attributes": {"a": 1}, "events": [good_event()]}]}
    assert_refused(call(ctx, "ucd_upsert", body, account=account), "account")
    assert_nothing_stored(ctx, account="acme")


def test_a_valid_event_next_to_an_invalid_one_is_not_stored(ctx):
    body = body_with(event=good_event(timestamp="2026-11-28T25:00:00Z"))
    assert_refused(call(ctx, "ucd_upsert", body, account="acme"), "users[1].events[0].timestamp")
    assert_nothing_stored(ctx)
    # The same body with the bad event fixed stores all three, so the refusal held back real data.
    body["users"][1]["events"][0]["timestamp"] = TS
    fixed = call(ctx, "ucd_upsert", body, account="acme")
    assert fixed.body == {"received_events": 3, "stored_events": 3, "duplicate_events": 0}


def test_a_timestamp_with_surrounding_whitespace_is_refused_not_trimmed(ctx):
    """Refused with a 400 naming the field, whitespace as the reason; the same instant without it is stored."""
    body = body_with(event=good_event(timestamp=" 2026-11-28T10:00:00Z "))
    response = call(ctx, "ucd_upsert", body, account="acme")
    assert_refused(response, "users[1].events[0].timestamp")
    assert "whitespace" in response.body["error"]["message"]
    assert_nothing_stored(ctx)
    body["users"][1]["events"][0]["timestamp"] = "2026-11-28T10:00:00Z"
    assert call(ctx, "ucd_upsert", body, account="acme").body["stored_events"] == 3


def test_the_fixed_body_stores_what_was_refused(ctx):
    body = body_with(event=good_event(event_params=[1]))
    assert_refused(call(ctx, "ucd_upsert", body, account="acme"), "users[1].events[0].event_params")
    assert_nothing_stored(ctx)
    body["users"][1]["events"][0]["event_params"] = {"price": 1}
    assert call(ctx, "ucd_upsert", body, account="acme").body == {
        "received_events": 3,
        "stored_events": 3,
        "duplicate_events": 0,
    }
    assert ctx.ucd.profile("acme", "u2")["attributes"] == {"plan": "pro"}
    assert set(ctx.ucd.catalog("acme")["events"]) == {"purchase", "view"}


def test_a_merge_too_large_for_the_stored_profile_is_refused_and_leaves_nothing(ctx):
    """Only the stored profile shows the merge is too large; the intent written meanwhile is deleted too."""
    first = {"users": [{"user_id": "u1", "attributes": {"a": "x" * 20_000}, "events": [good_event()]}]}
    assert call(ctx, "ucd_upsert", first, account="acme").status == 200
    before = {
        t: list(ctx.storage.table(t).list_entities()) for t in (UCD_CATALOG_TABLE, UCD_SEGMENTS_TABLE, UCD_EVENTS_TABLE)
    }

    larger = {
        "users": [
            {
                "user_id": "u1",
                "attributes": {"b": "y" * 15_000},
                "events": [good_event(event_name="view", event_params={"page": "/"})],
            }
        ]
    }
    assert_refused(call(ctx, "ucd_upsert", larger, account="acme"), "users[0].attributes")

    for table, entities in before.items():
        assert list(ctx.storage.table(table).list_entities()) == entities, f"{table} changed"
    assert ctx.ucd.profile("acme", "u1")["attributes"] == {"a": "x" * 20_000}
    assert len(ctx.ucd.segments("acme", T0 - timedelta(hours=1), T0 + timedelta(hours=1))) == 1
