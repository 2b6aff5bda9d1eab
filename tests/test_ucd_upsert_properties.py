"""Upsert over arbitrary JSON and arbitrary Unicode (hypothesis), against Azurite.

Every request is answered 2xx or 4xx, never 5xx; a refused one stores nothing; what was accepted is
stored exactly once: a resend answers only duplicates, and the window read holds each event id once.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import T0, call

AROUND_T0 = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))  # the clock stays at T0: every entry time is T0
_accounts = itertools.count()

# Any Unicode, unpaired surrogates and control characters included, and a few names that are hard as Table keys.
unicode_text = st.one_of(
    st.text(max_size=12),
    st.text(
        st.characters(codec=None, exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\x7f", "\x85"]),
        max_size=8,
    ),
    st.sampled_from(["purchase", "é" * 100, "😀" * 64, "a/b#c?d\\e%f", "'", " ", "x" * 257]),
)
# Any printable Unicode: names a request may well use, so that many requests are accepted and their storage checked.
printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Z")), min_size=1, max_size=16)
names = printable | st.builds("{} {}".format, printable, printable)


def json_of(leaves: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=3),
        max_leaves=8,
    )


values = json_of(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | unicode_text
)
anything = json_of(st.none() | st.booleans() | st.integers() | st.floats() | unicode_text)  # NaN and Infinity too


@st.composite
def rfc3339(draw) -> str:
    """A valid RFC 3339 date-time, in any of its spellings, years 0001 to 9999 (some out of the store's range)."""
    when = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    fraction = draw(st.sampled_from(["", ".5", ".123", ".123456789"]))
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-12:00", "+14:00"]))
    separator = draw(st.sampled_from(["T", "t"]))
    return when.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + fraction + offset


def upserts(names: st.SearchStrategy, timestamps: st.SearchStrategy, values: st.SearchStrategy) -> st.SearchStrategy:
    """Upsert bodies whose names, keys, timestamps and values come from these strategies."""
    events = st.fixed_dictionaries(
        {"event_name": names, "timestamp": timestamps},
        optional={"event_params": st.dictionaries(names, values, max_size=3)},
    )
    users = st.fixed_dictionaries(
        {"user_id": names},
        optional={
            "identifiers": st.dictionaries(names, values, max_size=2),
            "attributes": st.dictionaries(names, values, max_size=2),
            "events": st.lists(events, max_size=4),
        },
    )
    return st.fixed_dictionaries({"users": st.lists(users, min_size=1, max_size=3)})


bodies = st.one_of(
    upserts(names, rfc3339(), values),  # well-formed, any Unicode: mostly accepted
    upserts(
        names | unicode_text, rfc3339() | unicode_text | anything, anything
    ),  # anything in any place: mostly refused
    anything,  # not an upsert body at all
)


def _stored_ids(ctx, account: str) -> Counter:
    return Counter(r["event_id"] for batch in ctx.ucd.read_window(account, *AROUND_T0) for r in batch.to_pylist())


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=bodies)
def test_upsert_answers_2xx_or_4xx_and_stores_what_it_accepted_exactly_once(ctx, body):
    account = f"prop-{next(_accounts)}"  # a fresh account per example: what is stored is this example's alone
    raw = json.dumps(body).encode()  # unpaired surrogates travel as \ud800 escapes, as any client may send them
    first = call(ctx, "ucd_upsert", raw, account=account)
    assert first.status < 500, (first.status, first.body)
    event(f"answered {first.status}")  # --hypothesis-show-statistics: how many were accepted
    if first.status >= 400:
        assert first.body["error"]["field"], first.body
        assert _stored_ids(ctx, account) == Counter(), "a refused request stores nothing"
        return
    received = sum(len(u.get("events", [])) for u in body["users"])
    answer = first.body
    assert answer["received_events"] == received == answer["stored_events"] + answer["duplicate_events"]
    again = call(ctx, "ucd_upsert", raw, account=account)
    assert again.status == 200 and again.body == {
        "received_events": received,
        "stored_events": 0,
        "duplicate_events": received,
    }
    stored = _stored_ids(ctx, account)
    assert set(stored.values()) <= {1}, "each event id is stored once"
    assert sum(stored.values()) == answer["stored_events"]
