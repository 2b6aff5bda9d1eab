"""Every valid name is storable: non-ASCII user ids, event names and keys within the documented limits.

Names become Table keys (profiles, catalog); a key of percent-encoded UTF-8 outgrew the key size
limit, and storage's refusal was answered "503, retry" forever.
"""

from __future__ import annotations

import pytest

from exporter.ucd.tables import table_key
from tests.ucd_helpers import call, rows

NAMES = [
    pytest.param("é" * 100, "purchase", id="user-e-acute-100"),
    pytest.param("一" * 60, "purchase", id="user-cjk-60"),
    pytest.param("😀" * 50, "purchase", id="user-emoji-50"),
    pytest.param("u1", "é" * 128, id="event-e-acute-128"),
    pytest.param("a/b#c?d\\e%f", "x/y#z", id="reserved-ascii"),
]


@pytest.mark.parametrize("user_id,event_name", NAMES)
def test_a_valid_name_is_stored_read_and_deleted(ctx, user_id, event_name):
    body = {
        "users": [
            {
                "user_id": user_id,
                "attributes": {"ключ": "значение"},
                "events": [
                    {"event_name": event_name, "timestamp": "2026-11-28T09:00:00Z", "event_params": {"ключ": 1}}
                ],
            }
        ]
    }

    answer = call(ctx, "ucd_upsert", body, account="acme")

    assert answer.status == 200, answer.body
    assert answer.body["stored_events"] == 1
    assert call(ctx, "ucd_upsert", body, account="acme").body["duplicate_events"] == 1
    assert [(r["user_id"], r["event_name"]) for r in rows(ctx)] == [(user_id, event_name)]
    assert ctx.ucd.profile("acme", user_id)["attributes"] == {"ключ": "значение"}
    assert call(ctx, "ucd_catalog", account="acme").body["events"] == {event_name: ["ключ"]}
    assert call(ctx, "ucd_delete_user", account="acme", user_id=user_id).status == 200


def test_table_keys_stay_within_the_key_limit_and_hold_no_reserved_character():
    for name in ("é" * 128, "😀" * 64, "/" * 256):
        key = table_key(name)
        assert len(key.encode("utf-16-le")) <= 1024
        assert not set(key) & set("/\\#?")
    assert table_key("user-42_a.b") == "user-42_a.b" and table_key("a@x") == "a%40x"
    assert table_key("/" * 256) != table_key("/" * 255)
