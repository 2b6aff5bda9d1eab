"""What a job reads ahead (exporter/jobs/ahead.py): only when a window is due, only for that window, and
never the destination client."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from exporter.clock import ManualClock
from exporter.jobs import ahead
from exporter.windows import Window

ACTIVATED = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)
SETTLE = 300


class Calls:
    def __init__(self):
        self.lock = threading.Lock()
        self.listed: list[tuple[datetime, datetime]] = []
        self.plans: list[int] = []
        self.opened = 0

    def segments(self, account: str, start: datetime, end: datetime) -> list[str]:
        with self.lock:
            self.listed.append((start, end))
        return [f"{account}:{start:%H}"]

    def plan(self, account: str, iid: str, start: int) -> None:
        with self.lock:
            self.plans.append(start)

    def destination_for(self, integration: object) -> object:
        with self.lock:
            self.opened += 1
        return "client"


def _job(monkeypatch: pytest.MonkeyPatch, now: datetime):
    calls = Calls()
    ctx = SimpleNamespace(
        clock=ManualClock(now),
        settings=SimpleNamespace(settle_seconds=SETTLE),
        ucd=SimpleNamespace(segments=calls.segments),
        destination_for=calls.destination_for,
    )
    monkeypatch.setattr(ahead.stores, "splits", lambda _ctx: SimpleNamespace(get=calls.plan))
    integration = SimpleNamespace(
        account="acct", id="iid", activated_at=ACTIVATED, last_success_end=None, frequency_hours=1
    )
    return ctx, integration, calls


def test_nothing_due_reads_nothing_and_opens_no_client(monkeypatch):
    ctx, integration, calls = _job(monkeypatch, ACTIVATED + timedelta(minutes=30))
    read = ahead.read_ahead(ctx, integration)
    assert read == ahead.ReadAhead()
    assert (calls.listed, calls.plans, calls.opened) == ([], [], 0)


def test_the_first_window_is_read_once_and_only_for_itself(monkeypatch):
    due = ACTIVATED + timedelta(hours=2, seconds=SETTLE + 1)  # two windows due
    ctx, integration, calls = _job(monkeypatch, due)
    read = ahead.read_ahead(ctx, integration)
    first = Window(ACTIVATED, ACTIVATED + timedelta(hours=1))
    second = Window(first.end, first.end + timedelta(hours=1))
    assert read.window == first
    assert ahead.listing(ctx, "acct", first, read)() == ["acct:00"]
    assert ahead.recorded_plan(read, first) is not None
    # Another window (the next one, or a begun window with other bounds) is read when its turn comes.
    assert ahead.listing(ctx, "acct", second, read)() == ["acct:01"]
    assert ahead.recorded_plan(read, second) is None
    longer = Window(first.start, first.start + timedelta(hours=2))
    assert ahead.listing(ctx, "acct", longer, read)() == ["acct:00"]
    assert calls.listed == [(first.start, first.end), (second.start, second.end), (longer.start, longer.end)]
    assert calls.plans == [first.start_unix]
    assert calls.opened == 0  # built by the job itself, at its first window (its CPU would delay these reads)
