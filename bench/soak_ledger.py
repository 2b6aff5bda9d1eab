"""The soak's own record of what it did: every event it sent and which were acknowledged, and every
integration's selection, activation, frequency changes and deletion (from the API's answers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from exporter.ucd.request import parse_upsert


@dataclass(frozen=True)
class EventFacts:
    """What the soak sent: the store's identity of an event is a pure function of these."""

    account: str
    user_id: str
    name: str
    timestamp: str  # ISO 8601 UTC with milliseconds, as the file shows it
    params: dict[str, str | None]  # rendered as a CSV cell


@dataclass
class EventLedger:
    facts: dict[str, EventFacts] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    transmissions: int = 0  # events sent, resends and retries included

    def sent(self, account: str, body: dict[str, Any]) -> list[str]:
        """Record a request's events; their ids, as the store computes them."""
        request = parse_upsert(account, body)
        ids = []
        for user in request.users:
            for event in user.events:
                self.facts.setdefault(
                    event.event_id,
                    EventFacts(account, event.user_id, event.event_name, event.timestamp, dict(event.params)),
                )
                ids.append(event.event_id)
        self.transmissions += len(ids)
        return ids

    def acknowledge(self, ids: list[str]) -> None:
        self.acknowledged.update(ids)


@dataclass(frozen=True)
class FrequencyChange:
    effective_from: datetime  # last_success_end (or activation) when the change was made
    hours: int


@dataclass(frozen=True)
class IntegrationSpec:
    """An integration as the customer configures it: its selection, destination, frequency, creation time."""

    label: str
    account: str
    site: str
    prefix: str
    events: tuple[tuple[str, tuple[str, ...]], ...]
    attributes: tuple[str, ...]
    frequency: int
    create_hour: float  # hours after the start; negative: that share of the run (-0.1: a tenth of the way in)
    format: str = "csv"  # the file format: csv, or csv.gz (the soak's reader decompresses it)


@dataclass
class IntegrationRecord:
    """One integration id as the API created it; a recreated integration is a new record."""

    id: str
    spec: IntegrationSpec
    activated_at: datetime
    frequencies: list[FrequencyChange]
    deleted_at: datetime | None = None

    @property
    def selected(self) -> set[str]:
        return {name for name, _params in self.spec.events}

    def header(self) -> list[str]:
        """DESIGN 4: the fixed columns, each selected parameter once (first selection order), attr_<key>."""
        params: list[str] = []
        for _name, keys in self.spec.events:
            params += [k for k in keys if k not in params]
        return ["event_id", "user_id", "event_name", "timestamp", *params, *(f"attr_{a}" for a in self.spec.attributes)]

    def params_of(self, event_name: str) -> set[str]:
        return next((set(keys) for name, keys in self.spec.events if name == event_name), set())

    def hours_at(self, start: datetime) -> int:
        """The frequency of the window starting at `start`: the latest change in force from there on."""
        hours = self.frequencies[0].hours
        for change in self.frequencies:
            if change.effective_from <= start:
                hours = change.hours
        return hours

    def windows(self, until: datetime, settle: timedelta) -> Iterator[tuple[datetime, datetime]]:
        """Every window due by `until`: from activation, contiguous, each the frequency then in force."""
        start = self.activated_at
        while True:
            end = start + timedelta(hours=self.hours_at(start))
            if end + settle > until:
                return
            yield start, end
            start = end

    def file_path(self, start: datetime, end: datetime) -> str:
        name = (
            f"{self.spec.account}_events_{self.id}_{int(start.timestamp())}_{int(end.timestamp())}.{self.spec.format}"
        )
        prefix = self.spec.prefix
        return f"{prefix.rstrip('/')}/{name}" if prefix else name
