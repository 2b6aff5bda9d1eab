"""The integration record: what is stored, and how it is read back (pure, no I/O; its request bodies: bodies.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from azure.data.tables import TableEntity

from ..clock import iso, parse_instant
from ..destinations import destination_kind
from ..export.formats import DEFAULT_FORMAT
from ..export.plan import EventSelection, Selection, events_from_json, events_json
from ..notifications.config import NotifyConfig


class Status(StrEnum):
    """Where an integration stands. Customers set active or paused; a destination failure sets the others."""

    ACTIVE = "active"
    PAUSED = "paused"
    CREDENTIAL_ERROR = "credential_error"  # the destination refused the credentials or a permission
    DESTINATION_ERROR = "destination_error"  # e.g. the container is missing

    @property
    def stopped(self) -> bool:
        """Stopped by a destination failure: only verified new credentials resume it."""
        return self in (Status.CREDENTIAL_ERROR, Status.DESTINATION_ERROR)


@dataclass(frozen=True)
class DestinationConfig:
    """Where files go. `sealed_secret` is the encrypted secret (an Azure connection string, the S3 or GCS
    credential part); `masked` is all anyone sees. `container` is the container or bucket."""

    type: str
    container: str
    prefix: str
    sealed_secret: str
    masked: str


@dataclass(frozen=True)
class Integration:
    account: str
    id: str
    name: str
    destination: DestinationConfig
    events: tuple[EventSelection, ...]
    attributes: tuple[str, ...]
    frequency_hours: int
    status: Status
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None = None
    last_success_end: datetime | None = None
    last_error: str | None = None
    queued_until: datetime | None = None
    slot: int = 0
    etag: str | None = field(default=None, compare=False)
    format: str = DEFAULT_FORMAT.value  # the window files' format (exporter.export.formats)
    manifest: bool = False  # a `{file name}.manifest.json` after each file
    notify: NotifyConfig | None = None  # where to tell of stops, recoveries and deliveries (exporter/notifications)
    # The due index (exporter/integrations/due.py): this state's entry key, and how many writes made it.
    due_key: str = field(default="", compare=False)
    revision: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # a plain string from a caller becomes the enum

    def with_changes(self, **changes: Any) -> Integration:  # any of its fields, as dataclasses.replace takes them
        return replace(self, **changes)

    @property
    def selection(self) -> Selection:
        """What the next window's file holds and how it is written (a begun window keeps its run record's)."""
        return Selection(self.events, self.attributes, self.format, self.manifest)

    def config(self) -> tuple:
        """What a customer edits, as opposed to the delivery state the worker moves."""
        return (
            self.name,
            self.destination,
            self.events,
            self.attributes,
            self.frequency_hours,
            self.status,
            self.format,
            self.manifest,
            self.notify,
        )

    def to_json(self) -> dict[str, Any]:
        """The API form: never the secret, only its masked form."""
        kind = destination_kind(self.destination.type)
        return {
            "id": self.id,
            "account": self.account,
            "name": self.name,
            "destination": {
                "type": self.destination.type,
                kind.container_field: self.destination.container,
                "prefix": self.destination.prefix,
                **kind.shown(self.destination.masked),
            },
            "events": events_json(self.events),
            "attributes": list(self.attributes),
            "frequency_hours": self.frequency_hours,
            "format": self.format,
            "manifest": self.manifest,
            "notify": self.notify.to_json() if self.notify else None,
            "status": self.status.value,
            "activated_at": _iso(self.activated_at),
            "last_success_end": _iso(self.last_success_end),
            "last_error": self.last_error,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }

    def record(self) -> dict[str, object]:
        """The stored entity without the due index's bookkeeping (which every write moves on)."""
        return {k: v for k, v in self.to_entity().items() if k not in ("due_key", "revision")}

    def same_record(self, other: Integration) -> bool:
        """Equal as stored (times at the stored precision), whatever the ETags."""
        return self.record() == other.record()

    def to_entity(self) -> dict[str, object]:
        return {
            "PartitionKey": self.account,
            "RowKey": self.id,
            "kind": "integration",
            "name": self.name,
            "destination_type": self.destination.type,
            "container": self.destination.container,
            "prefix": self.destination.prefix,
            "secret": self.destination.sealed_secret,
            "destination_masked": self.destination.masked,
            "events": json.dumps(events_json(self.events)),
            "attributes": json.dumps(list(self.attributes)),
            "frequency_hours": self.frequency_hours,
            "format": self.format,
            "manifest": self.manifest,
            "status": self.status.value,
            "activated_at": _iso(self.activated_at) or "",
            "last_success_end": _iso(self.last_success_end) or "",
            "last_error": self.last_error or "",
            "queued_until": _iso(self.queued_until) or "",
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "slot": self.slot,
            "notify_url": self.notify.url if self.notify else "",
            "notify_events": ",".join(self.notify.events) if self.notify else "",
            "notify_secret": self.notify.sealed_secret if self.notify else "",
            "due_key": self.due_key,
            "revision": self.revision,
        }

    @classmethod
    def from_entity(cls, entity: TableEntity) -> Integration:
        return cls(
            account=entity["PartitionKey"],
            id=entity["RowKey"],
            name=entity["name"],
            destination=DestinationConfig(
                type=entity["destination_type"],
                container=entity["container"],
                prefix=entity["prefix"],
                sealed_secret=entity["secret"],
                masked=entity["destination_masked"],
            ),
            events=events_from_json(json.loads(entity["events"])),
            attributes=tuple(json.loads(entity["attributes"])),
            frequency_hours=int(entity["frequency_hours"]),
            status=Status(entity["status"]),
            created_at=parse_instant(entity["created_at"], "stored"),
            updated_at=parse_instant(entity["updated_at"], "stored"),
            activated_at=_parse(entity.get("activated_at")),
            last_success_end=_parse(entity.get("last_success_end")),
            last_error=entity.get("last_error") or None,
            queued_until=_parse(entity.get("queued_until")),
            slot=int(entity.get("slot", 0)),
            format=entity.get("format") or DEFAULT_FORMAT.value,  # stored before formats existed: CSV
            manifest=bool(entity.get("manifest", False)),
            notify=_notify(entity),
            due_key=entity.get("due_key") or "",
            revision=int(entity.get("revision") or 0),
            etag=entity.metadata.get("etag") if hasattr(entity, "metadata") else None,
        )


def _notify(entity: TableEntity) -> NotifyConfig | None:
    url = entity.get("notify_url") or ""
    if not url:
        return None
    return NotifyConfig(url, tuple(filter(None, entity.get("notify_events", "").split(","))), entity["notify_secret"])


def _iso(when: datetime | None) -> str | None:
    return iso(when) if when else None


def _parse(text: str | None) -> datetime | None:
    return parse_instant(text, "stored") if text else None
