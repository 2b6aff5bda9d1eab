"""Sending notifications: written by the export path into the outbox, POSTed by a queue trigger of their own,
retried for a day.

The export path writes each event as an outbox row with the state change it tells, then queues a
pointer to it (exporter/notifications/outbox.py); queuing never raises into the export. The queue
trigger (`process_notification`) reads the row, reads a split window's file back first (the digest,
exporter/notifications/digest.py), and POSTs the signed CloudEvent to the integration's current url; a
receiver that is down, slow or answers anything but 2xx gets the same event again, after a growing
delay, until 24 hours after the first attempt (at least once: receivers deduplicate by `id`). The
delays are the queue's visibility delays; the due time also travels in the row and the pointer, so the
local host (`tick`, `serve`), whose clock may be simulated, keeps them by its own clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests

from .. import egress, pinning
from ..clock import from_unix, iso, to_unix
from ..errors import ExporterError, NotFoundError
from ..storage import NOTIFY_ATTEMPTS_TABLE
from . import digest
from .attempts import Attempt, AttemptLog
from .config import check_notify_url
from .events import body_bytes, signed_headers
from .outbox import DIGEST, SEND, Outbox, Pending, asks, delivered_event, queue_name

if TYPE_CHECKING:
    from ..context import Context
    from ..integrations.model import Integration

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 3600
GIVE_UP_AFTER = timedelta(hours=24)
URL_FIELD = "notify.url"
TIMEOUT_SECONDS = 10  # a slow receiver costs the notification trigger this long, never an export
VISIBILITY_SECONDS = 300

Requeue = Callable[[str, int], object]  # (message, delay in seconds)


def due(ctx: Context, message: str) -> bool:
    try:
        return int(json.loads(message)["not_before"]) <= to_unix(ctx.clock.now())
    except (ValueError, KeyError, TypeError):
        return True  # malformed: processed (and dropped) at once


def process_notification(ctx: Context, message: str, requeue: Requeue) -> str:
    """Act on the outbox row a pointer names: read a split window's file back, then POST its event; on
    failure move the row on and queue the pointer again with a delay (`requeue`), for up to 24 hours.

    Answers what happened: sent, retrying, gave up, digested (read back, nobody asked for the event),
    dropped (malformed, done already, a stale pointer, integration deleted or no longer asking for it)
    or not due (queued again for the rest of its delay).
    """
    try:
        account, event_id, seq = json.loads(message)["outbox"]
        account, event_id, seq = str(account), str(event_id), int(seq)
    except (ValueError, KeyError, TypeError):
        log.error("dropping a malformed notification message")
        return "dropped"
    outbox = Outbox(ctx.repo.table)
    row = outbox.get(account, event_id)
    if row is None or row.seq != seq:
        return "dropped"  # sent (or given up) already, or another pointer moved the row on
    now = ctx.clock.now()
    if row.not_before > to_unix(now):
        requeue(message, row.not_before - to_unix(now))
        return "not due"
    try:
        integration = ctx.repo.get(row.account, row.integration_id)
    except NotFoundError:
        outbox.delete(row)
        return "dropped"
    if row.step == DIGEST:
        digested = _digest(ctx, outbox, integration, row, now, requeue)
        if isinstance(digested, str):
            return digested
        row = digested
    return _send(ctx, outbox, integration, row, now, requeue)


def _digest(
    ctx: Context, outbox: Outbox, integration: Integration, row: Pending, now: datetime, requeue: Requeue
) -> Pending | str:
    """The window's SHA-256 read back (exporter/notifications/digest.py); then the row is its `delivered` event."""
    context = {"account": row.account, "integration_id": row.integration_id, "window_start": row.window_start}
    if now - from_unix(row.since) >= GIVE_UP_AFTER:  # also a read that never ends in time (a killed invocation)
        log.error("gave up reading the file back after 24 hours; told without its SHA-256", extra=context)
        record = ctx.runs.get(row.account, row.integration_id, row.window_start)
    else:
        try:
            record = digest.read_back(ctx, integration, row.window_start)
        except digest.ANTICIPATED as error:
            log.warning("could not read the file back, retrying (%s)", error.code, extra=context)
            return _again(outbox, row, now, requeue)
    if record is None or not asks(integration, "delivered"):
        outbox.delete(row)
        return "digested"
    event = delivered_event(integration, record).cloud_event(str(row.event["time"]))
    moved = outbox.update(row.moved(now, step=SEND, event=event, since=to_unix(now), tries=0))
    return moved if moved is not None else "dropped"


def _send(ctx: Context, outbox: Outbox, integration: Integration, row: Pending, now: datetime, requeue: Requeue) -> str:
    config = integration.notify
    if config is None or row.kind not in config.events:
        outbox.delete(row)
        return "dropped"
    cloud_event = row.event
    context = {"account": row.account, "integration_id": row.integration_id, "event": row.event_id}
    status = _post(ctx, config.url, config.sealed_secret, cloud_event, now)
    outcome = _outcome(status, now - from_unix(row.since) >= GIVE_UP_AFTER)
    attempt_log(ctx).add(
        row.account, row.integration_id, Attempt(iso(now), row.event_id, cloud_event["type"], outcome, status)
    )
    if outcome == "sent":
        outbox.delete(row)
        log.info("notification sent", extra={**context, "status": status})
    elif outcome == "gave up":
        outbox.delete(row)
        log.error("notification given up after 24 hours of retries", extra={**context, "status": status})
    else:
        log.warning("notification failed, retrying", extra={**context, "status": status, "attempt": row.tries})
        return _again(outbox, row, now, requeue)
    return outcome


def _again(outbox: Outbox, row: Pending, now: datetime, requeue: Requeue) -> str:
    """The row moved on by a growing delay and its pointer queued again; a pointer that lost the row to another
    delivery of it is dropped (that one queues the next)."""
    delay = min(FIRST_DELAY_SECONDS * 2**row.tries, MAX_DELAY_SECONDS)
    moved = outbox.update(row.moved(now, delay, tries=row.tries + 1))
    if moved is None:
        return "dropped"
    requeue(moved.pointer(), delay)
    return "retrying"


def _outcome(status: int | None, expired: bool) -> str:
    if status is not None and 200 <= status < 300:
        return "sent"
    return "gave up" if expired else "retrying"


def attempt_log(ctx: Context) -> AttemptLog:
    return AttemptLog(ctx.storage.table(NOTIFY_ATTEMPTS_TABLE))


def _post(ctx: Context, url: str, sealed_secret: str, cloud_event: dict[str, Any], now: datetime) -> int | None:
    """The receiver's status, or None if it could not be reached (or its url is no longer allowed)."""
    try:
        check_notify_url(url, URL_FIELD)  # checked again: the setting may have changed since it was stored
    except ExporterError:
        return None
    secret = ctx.integrations.secrets.open(sealed_secret)
    body = body_bytes(cloud_event)
    headers = signed_headers(cloud_event["id"], to_unix(now), body, secret)
    # Connected to the address the policy checked (no second lookup), no redirect followed.
    session = pinning.pinned_session(egress.guard(URL_FIELD, **{URL_FIELD: url}))
    try:
        with session:
            answer = session.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS)
            answer.close()
    except (requests.RequestException, egress.EgressRefused):
        return None
    return answer.status_code


def drain_notifications(ctx: Context) -> dict[str, int]:
    """The local host's notification trigger: send every due notification once; the others wait for a later tick.

    A retried notification is queued visible at once: its due time is in the message and this loop
    keeps it by the context's clock (a test's ManualClock), so nothing waits on the queue's real time.
    """
    queue = ctx.storage.queue(queue_name(ctx))
    counts: dict[str, int] = {}
    waiting = []
    while True:
        messages = list(
            queue.receive_messages(messages_per_page=16, visibility_timeout=VISIBILITY_SECONDS, max_messages=16)
        )
        if not messages:
            break
        for message in messages:
            if not due(ctx, message.content):
                waiting.append(message)
                continue
            try:
                outcome = process_notification(ctx, message.content, lambda again, _delay: queue.send_message(again))
            except Exception as error:  # noqa: BLE001 - the host would deliver it again; so do we, next tick
                log.error("notification failed unexpectedly (%s)", type(error).__name__)
                waiting.append(message)
                continue
            queue.delete_message(message)
            counts[outcome] = counts.get(outcome, 0) + 1
    for message in waiting:
        queue.update_message(message, visibility_timeout=0)
    return counts
