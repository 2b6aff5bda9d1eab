"""Time is injected everywhere: the real clock in production, a fixed or manual one in tests and `--now`."""
from __future__ import annotations

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


def parse_instant(text: str, field: str) -> datetime:
    """Parse ISO 8601; a value without an offset is taken as UTC."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("must be an ISO 8601 date-time", field=field)
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"is not an ISO 8601 date-time: {text!r}", field=field) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def to_unix(when: datetime) -> int:
    return int(when.timestamp())


def from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def iso(when: datetime) -> str:
    """ISO 8601 UTC with milliseconds, the one format every output uses."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
