"""The request checks every operation shares (exporter.validation, exporter.clock): pure, and through the API.

Each refusal is a 400 naming the field, never a 5xx; nothing is stored.
"""

from __future__ import annotations

import json

import pytest

from exporter.clock import parse_instant
from exporter.errors import InputError
from exporter.validation import MAX_DEPTH, check_fields, check_name, load_json_body
from tests.helpers import call


def nested(depth: int) -> bytes:
    return (
        b'{"users":[{"user_id":"u1","events":[{"event_name":"e","timestamp":"2026-11-28T10:00:00Z","event_params":{"p":'
        + (b"[" * depth + b"]" * depth)
        + b"}}]}]}"
    )


@pytest.mark.parametrize("depth", [MAX_DEPTH, 1_000, 100_000])
def test_nesting_beyond_the_limit_is_a_400_naming_the_body(depth):
    with pytest.raises(InputError) as refused:
        load_json_body(nested(depth))
    assert refused.value.field == "body" and str(MAX_DEPTH) in refused.value.message


def test_nesting_within_the_limit_is_accepted():
    assert load_json_body(nested(MAX_DEPTH - 6))["users"][0]["user_id"] == "u1"


def test_deep_nesting_through_the_api_is_a_400_and_stores_nothing(ctx):
    answer = call(ctx, "ucd_upsert", nested(1_000), account="acme")
    assert answer.status == 400 and answer.body["error"]["field"] == "body", answer.body
    assert call(ctx, "ucd_catalog", account="acme").body["events"] == {}


@pytest.mark.parametrize("raw", [b'{"users": [], "users": [{"user_id": "u"}]}', b'{"a": {"k": 1, "k": 2}}'])
def test_a_key_repeated_in_one_object_is_refused(raw):
    with pytest.raises(InputError) as refused:
        load_json_body(raw)
    assert refused.value.field == "body" and "twice" in refused.value.message


@pytest.mark.parametrize("char", ["\x00", "\x1f", "\x7f", "\x85", "\x9f"])
def test_every_control_character_is_refused_in_names(char):
    with pytest.raises(InputError, match="control characters"):
        check_name(f"price{char}", "events[0].params[0]")


def test_a_delete_character_in_a_parameter_key_never_reaches_a_header(ctx):
    body = {
        "users": [
            {
                "user_id": "u1",
                "events": [
                    {"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z", "event_params": {"pri\x7fce": 1}}
                ],
            }
        ]
    }
    answer = call(ctx, "ucd_upsert", body, account="acme")
    assert answer.status == 400, answer.body
    assert answer.body["error"]["field"] == "users[0].events[0].event_params key"


@pytest.mark.parametrize(
    "text",
    [
        "2026-W48-6",
        "T10Z",
        "20261128T100000Z",
        "2026-11-28",
        "2026-11-28T10:00:00",
        "2026-11-28T10:00Z",
        "2026-11-28 10:00:00Z",
        "2026-11-28T10:00:00+0100",
        "2026-13-01T00:00:00Z",
        "2026-11-28T25:00:00Z",
        "",
    ],
)
def test_only_rfc3339_with_an_offset_is_a_timestamp(text):
    with pytest.raises(InputError) as refused:
        parse_instant(text, "users[0].events[0].timestamp")
    assert refused.value.field == "users[0].events[0].timestamp"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00+00:00"),
        ("2026-11-28t10:00:00z", "2026-11-28T10:00:00+00:00"),
        ("2026-11-28T11:00:00.5+01:00", "2026-11-28T10:00:00.500000+00:00"),
        ("2026-11-28T10:00:00.123456789Z", "2026-11-28T10:00:00.123456+00:00"),
    ],
)
def test_rfc3339_timestamps_are_read_to_utc(text, expected):
    assert parse_instant(text, "t").isoformat() == expected


def test_a_zone_less_timestamp_through_the_api_is_a_400_naming_it(ctx):
    body = {"users": [{"user_id": "u1", "events": [{"event_name": "purchase", "timestamp": "2026-11-28T10:00:00"}]}]}
    answer = call(ctx, "ucd_upsert", json.dumps(body).encode(), account="acme")
    assert answer.status == 400 and answer.body["error"]["field"] == "users[0].events[0].timestamp", answer.body


@pytest.mark.parametrize("operation", ["ucd_catalog", "integrations_list"])
@pytest.mark.parametrize("account", ["acme\n", "acme\r\n", "\nacme"])
def test_an_account_with_a_trailing_newline_is_a_400(ctx, operation, account):
    """`^...$` matched "acme\\n" (`$` matches before a final newline), so it was taken as an account."""
    answer = call(ctx, operation, account=account)
    assert (answer.status, answer.body["error"]["field"]) == (400, "account"), answer.body


@pytest.mark.parametrize(
    "where, key, field",
    [
        ("body", "colour", "colour"),
        ("destination", "region", "destination.region"),
        ("body", "", 'body[""]'),
        ("body", "a.b", 'body["a.b"]'),
        ("events[0]", "1", 'events[0]["1"]'),
    ],
)
def test_an_unknown_member_is_named_by_a_json_path_even_when_its_key_is_empty_or_not_a_name(where, key, field):
    """Found by test_ucd_upsert_properties.py: {"": null} was refused with the field "" (naming nothing)."""
    with pytest.raises(InputError) as refused:
        check_fields({key: None}, set(), where)
    assert refused.value.field == field and refused.value.message == f"{field}: is not a known field"
