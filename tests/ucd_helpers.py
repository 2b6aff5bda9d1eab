"""Helpers shared by the UCD tests (tests/test_ucd_*.py): calls, crash points, request bodies, what is stored.

The general helpers (`T0`, `call`, `run_together`) are in tests/helpers.py; this module re-exports them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from exporter.ucd import UcdStore, UpsertRequest, parse_upsert
from tests.helpers import T0, call, run_together  # noqa: F401 - re-exported for the UCD tests

WIDE = (T0 - timedelta(hours=12), T0 + timedelta(hours=12))  # wider than any UCD test moves the clock
TS = "2026-11-28T09:00:00Z"

# ------------------------------------------------------------------ running things


class Crash(BaseException):
    """The process dies here (BaseException: nothing in the store may run clean-up for a dead process)."""


def crash_at(point: str, occurrence: int = 1) -> Callable[[str], None]:
    """A `fault` hook that crashes the process the `occurrence`-th time the upsert reaches `point`."""
    seen: Counter = Counter()

    def fault(p: str) -> None:
        seen[p] += 1
        if p == point and seen[p] == occurrence:
            raise Crash(p)

    return fault


def quick_store(storage, clock, **kw) -> UcdStore:
    """A store whose deadlines pass at once: 1 s commit timeout, no sleeping, 10 ms polls of other owners."""
    store = UcdStore(storage, clock, commit_timeout_seconds=1, sleep=lambda _s: None, **kw)
    store.ingest.poll_interval = 0.01
    return store


# ------------------------------------------------------------------ request bodies


def ev(name: str = "purchase", ts: str = TS, **params) -> dict:
    event = {"event_name": name, "timestamp": ts}
    if params:
        event["event_params"] = params
    return event


def purchase_at(minute: int, **params) -> dict:
    """A purchase the day before T0 at 08:<minute>, its minute as parameter `n`."""
    return {
        "event_name": "purchase",
        "timestamp": f"2026-11-27T08:{minute:02d}:00Z",
        "event_params": {"n": minute, **params},
    }


# Two users (one anonymous), ten events, one of them sent twice: nine to store.
TEN_EVENTS = {
    "users": [
        {
            "user_id": "u1",
            "attributes": {"email": "a@x"},
            "events": [purchase_at(m) for m in range(6)] + [purchase_at(0)],
        },
        {"user_id": "anon-2", "events": [purchase_at(m) for m in range(3)]},
    ]
}


def upsert_request(body: dict = TEN_EVENTS) -> UpsertRequest:
    return parse_upsert("acme", body)


def event_ids(body: dict = TEN_EVENTS) -> set[str]:
    """The identities of a body's events in account acme."""
    return {e.event_id for u in upsert_request(body).users for e in u.events}


def eid(account: str, user_id: str, event: dict) -> str:
    return parse_upsert(account, {"users": [{"user_id": user_id, "events": [event]}]}).users[0].events[0].event_id


# ------------------------------------------------------------------ what is stored


def upsert(ctx, users: list[dict], account: str = "acme") -> dict:
    """Upsert through the API; the answer must be 200 and its counts add up."""
    response = call(ctx, "ucd_upsert", {"users": users}, account=account)
    assert response.status == 200, response.body
    body = response.body
    assert body["stored_events"] + body["duplicate_events"] == body["received_events"]
    return body


def rows(ctx, start: datetime = WIDE[0], end: datetime = WIDE[1], account: str = "acme", **kw) -> list[dict]:
    return [r for batch in ctx.ucd.read_window(account, start, end, **kw) for r in batch.to_pylist()]


def row_ids(ctx, **kw) -> list[str]:
    """The event ids of `rows`, in read order."""
    return [r["event_id"] for r in rows(ctx, **kw)]


def stored_ids(ctx) -> Counter:
    """How often each event id is stored in account acme around T0."""
    return Counter(row_ids(ctx))
