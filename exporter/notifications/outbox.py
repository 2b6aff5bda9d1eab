"""The notification outbox: every event to tell is a row written in the same transaction as the state change
it tells, so a process that dies between the change and the queue loses nothing.

The row sits beside the integration, in its account's partition of the integrations table (kind `outbox`:
the integrations' own queries never see it), and the write that stops, recovers or advances the
integration carries it (`IntegrationRepo.replace(..., along=...)`): the row exists if and only if the
change does. After the write a pointer to the row is queued on the notification queue; the notification
trigger (exporter/notifications/sender.py) reads the row, acts on it and deletes it once the event is sent
or given up. A pointer that never made it to the queue (the process died first) is queued again by the
hourly sweep (`resend`) for every row not acted on `GRACE_SECONDS` after it was due. A pointer delivered
twice, or queued again while the first was only slow, sends at worst the same event (same id) twice; a
pointer older than its row's last change (`seq`) is dropped.

A window delivered without its file's SHA-256 (a split window: its parts were hashed apart) starts as a
`digest` row: the digest step (exporter/notifications/digest.py) reads the file back, writes the SHA-256 on
the run record and only then turns the row into the `delivered` event, or deletes it when nobody asked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from ..clock import iso, to_unix
from ..integrations.model import Integration, Status
from ..runs import RunRecord
from ..storage import as_columns
from ..windows import next_start
from .events import TYPES, Event

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

ROW_KIND = "outbox"
ROW_PREFIX = "~outbox~"
GRACE_SECONDS = 15 * 60  # longer than a queued pointer takes to be acted on (a digest reads a whole file)
DIGEST = "digest"  # the window's SHA-256 is read back first, then the row becomes SEND
SEND = "send"


@dataclass(frozen=True)
class Pending:
    """One outbox row: the event (a CloudEvent), the step it is at, and when it is due. Times: unix seconds."""

    account: str
    integration_id: str
    step: str
    event: dict[str, Any]
    window_start: int
    since: int  # when this step began: a send gives up 24 hours after it
    not_before: int
    resend_after: int  # the sweep queues a pointer again from here on
    seq: int = 0  # moves with every change of the row: a pointer naming an older one is stale
    tries: int = 0
    etag: str | None = field(default=None, compare=False)

    @property
    def event_id(self) -> str:
        return str(self.event["id"])

    @property
    def kind(self) -> str:
        return next(k for k, t in TYPES.items() if t == self.event["type"])

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.account,
            "RowKey": ROW_PREFIX + self.event_id,
            "kind": ROW_KIND,
            "event": json.dumps(self.event, ensure_ascii=False),
            **as_columns(
                self, ("integration_id", "step", "window_start", "since", "not_before", "resend_after", "seq", "tries")
            ),
        }

    @classmethod
    def from_entity(cls, entity: Any) -> Pending:
        return cls(
            entity["PartitionKey"],
            entity["integration_id"],
            entity["step"],
            json.loads(entity["event"]),
            int(entity["window_start"]),
            int(entity["since"]),
            int(entity["not_before"]),
            int(entity["resend_after"]),
            int(entity["seq"]),
            int(entity["tries"]),
            entity.metadata.get("etag"),
        )

    def pointer(self) -> str:
        """The queue message: which row, at which change. Never the event itself (its data stays in storage)."""
        return json.dumps({"outbox": [self.account, self.event_id, self.seq], "not_before": self.not_before})

    def moved(self, now: datetime, delay: int = 0, **changes: Any) -> Pending:
        """The row's next change: due `delay` seconds from `now`, its pointers before it stale."""
        due = to_unix(now) + delay
        return replace(self, not_before=due, resend_after=due + GRACE_SECONDS, seq=self.seq + 1, **changes)


def pending(step: str, event: Event, now: datetime) -> Pending:
    at = to_unix(now)
    cloud_event = event.cloud_event(iso(now))
    return Pending(
        event.account, event.integration_id, step, cloud_event, event.window_start, at, at, at + GRACE_SECONDS
    )


def asks(integration: Integration, kind: str) -> bool:
    return integration.notify is not None and kind in integration.notify.events


# ------------------------------------------------------------------ the rows a change writes with it


def delivered(integration: Integration, record: RunRecord, now: datetime) -> list[Pending]:
    """The advance past `record`'s window: its `delivered` event, after a digest if the record has no SHA-256."""
    event = delivered_event(integration, record)
    if not record.sha256:
        return [pending(DIGEST, event, now)]  # whoever asks: every run record gets its SHA-256
    return [pending(SEND, event, now)] if asks(integration, "delivered") else []


def delivered_event(integration: Integration, record: RunRecord) -> Event:
    details = {"file": record.file, "rows": record.rows, "bytes": record.bytes, "sha256": record.sha256 or None}
    window = (record.window_start, record.window_end)
    return Event("delivered", integration.account, integration.id, *window, tuple(details.items()))


def stopped(current: Integration, changed: Integration, reason: str, now: datetime) -> list[Pending]:
    """A stop: told only where it begins (a write to an integration already stopped is the same stop)."""
    if current.status.stopped or not changed.status.stopped or not asks(changed, "stopped"):
        return []
    return [pending(SEND, state_event("stopped", current, changed, (("reason", reason),)), now)]


def recovered(current: Integration, changed: Integration, now: datetime) -> list[Pending]:
    if not current.status.stopped or changed.status != Status.ACTIVE or not asks(changed, "recovered"):
        return []
    return [pending(SEND, state_event("recovered", current, changed), now)]


def state_event(
    kind: str, current: Integration, changed: Integration, details: tuple[tuple[str, Any], ...] = ()
) -> Event:
    """A stop or a recovery is about the window delivery waits on: the next one; its id names the write."""
    if changed.activated_at is None:
        start = end = 0
    else:
        begin = next_start(changed.activated_at, changed.last_success_end)
        start, end = to_unix(begin), to_unix(begin + timedelta(hours=changed.frequency_hours))
    return Event(kind, changed.account, changed.id, start, end, details, revision=current.revision)


class ChangeTeller:
    """What the integration service asks when it writes a change: the rows it carries, then their pointers."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def rows(self, current: Integration, changed: Integration) -> list[Pending]:
        return recovered(current, changed, self.ctx.clock.now())

    def send(self, rows: Sequence[Pending]) -> None:
        send(self.ctx, rows)


# ------------------------------------------------------------------ the queue side


def queue_name(ctx: Context) -> str:
    return ctx.settings.notify_queue_name


def send(ctx: Context, rows: Sequence[Pending]) -> None:
    """Queue a pointer to each row. Never raises: the row is in storage, and the sweep queues it again."""
    for row in rows:
        try:
            ctx.storage.queue(queue_name(ctx)).send_message(row.pointer())
        except Exception as error:  # noqa: BLE001 - logged; `resend` puts it right
            log.error(
                "could not queue a notification (%s); the sweep queues it again",
                type(error).__name__,
                extra={"account": row.account, "integration_id": row.integration_id, "event": row.event_id},
            )


def resend(ctx: Context) -> int:
    """The sweep's repair: a pointer again for every row not acted on since it was due (its pointer lost)."""
    now = ctx.clock.now()
    outbox = Outbox(ctx.repo.table)
    sent = 0
    for row in outbox.overdue(to_unix(now)):
        again = replace(row, resend_after=to_unix(now) + GRACE_SECONDS)  # same seq: the lost pointer's
        if outbox.update(again):
            send(ctx, [again])
            sent += 1
    if sent:
        log.warning("notifications queued again by the sweep", extra={"count": sent})
    return sent


class Outbox:
    """The rows, read and changed conditionally (ETag): of two deliveries of one pointer, one moves the row."""

    def __init__(self, table: TableClient):
        self.table = table

    def get(self, account: str, event_id: str) -> Pending | None:
        try:
            entity = self.table.get_entity(account, ROW_PREFIX + event_id)
        except ResourceNotFoundError:
            return None
        return Pending.from_entity(entity) if entity.get("kind") == ROW_KIND else None

    def update(self, row: Pending) -> Pending | None:
        """Replace the row as read (its etag): the row as stored now, or None when it changed or went meanwhile."""
        try:
            answer = self.table.update_entity(
                row.to_entity(), mode=UpdateMode.REPLACE, etag=row.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return replace(row, etag=answer["etag"])

    def delete(self, row: Pending) -> None:
        try:
            self.table.delete_entity(row.account, ROW_PREFIX + row.event_id)
        except ResourceNotFoundError:
            pass

    def overdue(self, now: int) -> Iterator[Pending]:
        query = "kind eq @kind and resend_after le @now"
        for entity in self.table.query_entities(query, parameters={"kind": ROW_KIND, "now": now}):
            yield Pending.from_entity(entity)
