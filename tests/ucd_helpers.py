"""Helpers shared by the UCD tests (tests/test_ucd_*.py): calls, crash points, request bodies, what is stored.

`T0`, `call` and `run_together` repeat tests/conftest.py's, which test modules must not import.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from exporter import api
from exporter.ucd import UcdStore, UpsertRequest, parse_upsert

T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=timezone.utc)  # where the `clock` fixture starts
WIDE = (T0 - timedelta(hours=12), T0 + timedelta(hours=12))  # wider than any UCD test moves the clock
TS = "2026-11-28T09:00:00Z"

# ------------------------------------------------------------------ running things


def call(ctx, operation: str, body: Any = None, **params: str) -> api.ApiResponse:
    """Run an API operation as the HTTP routes and the CLI do."""
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return api.handle(ctx, operation, api.ApiRequest(params=params, body=raw))


def run_together(work: Callable[[int], Any], n: int, timeout: float = 120) -> list[Any]:
    """Run work(0..n-1) on n threads released at the same instant; return their results, or raise the first error."""
    barrier = threading.Barrier(n, timeout=60)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as error:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a worker did not finish"
    if errors:
        raise errors[0]
    return results


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
    return {"event_name": "purchase", "timestamp": f"2026-11-27T08:{minute:02d}:00Z", "event_params": {"n": minute, **params}}


# Two users (one anonymous), ten events, one of them sent twice: nine to store.
TEN_EVENTS = {"users": [
    {"user_id": "u1", "attributes": {"email": "a@x"}, "events": [purchase_at(m) for m in range(6)] + [purchase_at(0)]},
    {"user_id": "anon-2", "events": [purchase_at(m) for m in range(3)]},
]}


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
