"""Window math (I2, I3): pure, no I/O.

Windows are anchored to the integration, not to clock hours: the first starts at activation, each
next one where the previous ended, each exactly `frequency` long, and one is due only once
`now >= end + settle`. The anchor is `last_success_end` when there is one, so catch-up after a
pause or a credential error yields the missed windows oldest first, and a frequency change applies
from `last_success_end` on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

FREQUENCIES_HOURS = (1, 2, 4, 6, 12, 24)


@dataclass(frozen=True, order=True)
class Window:
    start: datetime
    end: datetime

    @property
    def start_unix(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_unix(self) -> int:
        return int(self.end.timestamp())


def activation_instant(when: datetime) -> datetime:
    """When an integration activated at `when` starts: windows start at activation, and whole seconds keep the
    Unix bounds in file names exact.

    Rounded up, never down: an event stored before the activation instant is history, and I3 says no
    historical export.
    """
    whole = when.replace(microsecond=0)
    return whole if whole == when else whole + timedelta(seconds=1)


def next_start(activated_at: datetime, last_success_end: datetime | None) -> datetime:
    return last_success_end or activated_at


def due_windows(
    activated_at: datetime,
    last_success_end: datetime | None,
    frequency_hours: int,
    now: datetime,
    settle_seconds: int,
    limit: int | None = None,
    begun_end: datetime | None = None,
) -> Iterator[Window]:
    """The windows ready for export, oldest first, at most `limit` of them.

    `begun_end` is the end of a window whose export already began at the next start: it keeps the
    length it began with, since its file may be committed (a frequency change applies after it).
    """
    length = timedelta(hours=frequency_hours)
    settle = timedelta(seconds=settle_seconds)
    start = next_start(activated_at, last_success_end)
    end = begun_end or start + length
    count = 0
    while end + settle <= now and (limit is None or count < limit):
        yield Window(start, end)
        start, end = end, end + length
        count += 1


def is_due(
    activated_at: datetime, last_success_end: datetime | None, frequency_hours: int, now: datetime, settle_seconds: int
) -> bool:
    return next(due_windows(activated_at, last_success_end, frequency_hours, now, settle_seconds, 1), None) is not None


def backlog(
    activated_at: datetime, last_success_end: datetime | None, frequency_hours: int, now: datetime, settle_seconds: int
) -> int:
    """How many windows are due now (catch-up size)."""
    start = next_start(activated_at, last_success_end)
    span = now - timedelta(seconds=settle_seconds) - start
    return max(0, span // timedelta(hours=frequency_hours))


def export_lag_seconds(activated_at: datetime, last_success_end: datetime | None, now: datetime) -> float:
    """How far delivered data trails the clock: now minus the end of the last delivered window."""
    return max(0.0, (now - next_start(activated_at, last_success_end)).total_seconds())
