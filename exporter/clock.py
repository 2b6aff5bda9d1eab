"""Time is injected everywhere: the real clock in production, a fixed or manual one in tests and `--now`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Protocol

from .errors import InputError


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that moves only when told to (tests, `--now`)."""

    def __init__(self, start: datetime):
        self._now = start

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when

    def advance(self, **delta: float) -> datetime:
        self._now = self._now + timedelta(**delta)
        return self._now


# RFC 3339's date-time: a full date, a full time with optional fraction, and an offset (Z or ±HH:MM).
# Week dates, ordinal dates, basic format, bare dates and zone-less times are refused: a time without
# an offset is ambiguous, and the others are spellings no client of ours needs.
RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?P<fraction>\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})$"
)
RFC3339_HINT = "must be an RFC 3339 date-time with an offset, such as 2026-11-28T10:00:00.000Z"


def parse_instant(text: str, field: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset (fractions beyond microseconds are cut); UTC out."""
    if not isinstance(text, str):
        raise InputError(RFC3339_HINT, field=field)
    found = RFC3339.match(text.strip())
    if found is None:
        raise InputError(f"{RFC3339_HINT}; got {text!r}", field=field)
    fraction = (found["fraction"] or "")[:7]  # the dot and at most six digits
    offset = "+00:00" if found["offset"] in ("Z", "z") else found["offset"]
    try:
        value = datetime.fromisoformat(f"{found['date']}T{found['time']}{fraction}{offset}")
        return value.astimezone(timezone.utc)
    except ValueError:
        raise InputError(f"is not a valid date-time: {text!r}", field=field) from None
    except OverflowError:
        raise InputError("is out of range", field=field) from None


def to_unix(when: datetime) -> int:
    return int(when.timestamp())


def from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def iso(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds, the one format every output uses."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
