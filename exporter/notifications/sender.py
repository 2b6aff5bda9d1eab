"""Sending notifications: queued by the export path, POSTed by a queue trigger of their own, retried for a day.

The export path only enqueues (`notify`); an enqueue that fails is logged, never raised into the
export. The queue trigger (`process_notification`) POSTs the signed CloudEvent to the integration's
current url; a receiver that is down, slow or answers anything but 2xx gets the same event again,
after a growing delay, until 24 hours after the first attempt (at least once: receivers deduplicate
by `id`). The delays are the queue's visibility delays; the due time also travels in the message, so
the local host (`tick`, `serve`), whose clock may be simulated, keeps them by its own clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests

from .. import egress
from ..clock import iso, parse_instant, to_unix
from ..errors import ExporterError, NotFoundError
from ..integrations.model import Integration
from ..runs import RunRecord
from ..storage import NOTIFY_ATTEMPTS_TABLE
from ..windows import next_start
from .attempts import Attempt, AttemptLog
from .config import check_notify_url
from .events import TYPES, Event, body_bytes, signed_headers

if TYPE_CHECKING:
    from ..context import Context

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS = 30
MAX_DELAY_SECONDS = 3600
GIVE_UP_AFTER = timedelta(hours=24)
URL_FIELD = "notify.url"
TIMEOUT_SECONDS = 10  # a slow receiver costs the notification trigger this long, never an export
VISIBILITY_SECONDS = 300

Requeue = Callable[[str, int], object]  # (message, delay in seconds)


def queue_name(ctx: Context) -> str:
    return ctx.settings.notify_queue_name


# ------------------------------------------------------------------ the export path's side: enqueue only


def notify(ctx: Context, integration: Integration, event: Event) -> None:
    """Queue `event` if the integration asked for it. Never raises: a notification never fails an export."""
    config = integration.notify
    if config is None or event.kind not in config.events:
        return
    try:
        now = ctx.clock.now()
        message = {"event": event.cloud_event(iso(now)), "attempt": 0, "first_at": iso(now), "not_before": iso(now)}
        ctx.storage.queue(queue_name(ctx)).send_message(json.dumps(message))
    except Exception as error:  # noqa: BLE001 - logged, the export goes on
        log.error(
            "could not queue a notification (%s)",
            type(error).__name__,
            extra={"account": integration.account, "integration_id": integration.id, "event": event.id},
        )


def delivered(ctx: Context, integration: Integration, record: RunRecord) -> None:
    details = {"file": record.file, "rows": record.rows, "bytes": record.bytes, "sha256": record.sha256 or None}
    window = (record.window_start, record.window_end)
    notify(ctx, integration, Event("delivered", integration.account, integration.id, *window, tuple(details.items())))


def stopped(ctx: Context, integration: Integration, reason: str) -> None:
    notify(ctx, integration, _state_event("stopped", integration, (("reason", reason),)))


def recovered(ctx: Context, integration: Integration) -> None:
    notify(ctx, integration, _state_event("recovered", integration))


def _state_event(kind: str, integration: Integration, details: tuple[tuple[str, Any], ...] = ()) -> Event:
    """A stop or a recovery is about the window delivery waits on: the next one."""
    if integration.activated_at is None:
        start = end = 0
    else:
        begin = next_start(integration.activated_at, integration.last_success_end)
        start, end = to_unix(begin), to_unix(begin + timedelta(hours=integration.frequency_hours))
    return Event(kind, integration.account, integration.id, start, end, details)


# ------------------------------------------------------------------ the notification trigger's side


def due(ctx: Context, message: str) -> bool:
    try:
        return parse_instant(json.loads(message)["not_before"], "not_before") <= ctx.clock.now()
    except (ValueError, KeyError, TypeError, ExporterError):
        return True  # malformed: processed (and dropped) at once


def process_notification(ctx: Context, message: str, requeue: Requeue) -> str:
    """POST one queued notification; on failure queue it again with a delay (`requeue`), for up to 24 hours.

    Answers what happened: sent, retrying, gave up, dropped (malformed, integration deleted or no
    longer asking for it) or not due (queued again for the rest of its delay).
    """
    try:
        body = json.loads(message)
        cloud_event, attempt = body["event"], int(body["attempt"])
        first_at, not_before = (
            parse_instant(body["first_at"], "first_at"),
            parse_instant(body["not_before"], "not_before"),
        )
        account, integration_id = cloud_event["data"]["account"], cloud_event["data"]["integration_id"]
        kind = next(k for k, t in TYPES.items() if t == cloud_event["type"])
    except (ValueError, KeyError, TypeError, StopIteration, ExporterError):
        log.error("dropping a malformed notification message")
        return "dropped"
    now = ctx.clock.now()
    if not_before > now:
        requeue(message, int((not_before - now).total_seconds()) + 1)
        return "not due"
    context = {"account": account, "integration_id": integration_id, "event": cloud_event["id"], "attempt": attempt}
    try:
        integration = ctx.repo.get(account, integration_id)
    except NotFoundError:
        return "dropped"
    config = integration.notify
    if config is None or kind not in config.events:
        return "dropped"
    status = _post(ctx, config.url, config.sealed_secret, cloud_event, now)
    outcome = _outcome(status, now - first_at >= GIVE_UP_AFTER)
    record = Attempt(iso(now), cloud_event["id"], cloud_event["type"], outcome, status)
    attempt_log(ctx).add(account, integration_id, record)
    if outcome == "sent":
        log.info("notification sent", extra={**context, "status": status})
    elif outcome == "gave up":
        log.error("notification given up after 24 hours of retries", extra={**context, "status": status})
    else:
        delay = min(FIRST_DELAY_SECONDS * 2**attempt, MAX_DELAY_SECONDS)
        again = {**body, "attempt": attempt + 1, "not_before": iso(now + timedelta(seconds=delay))}
        requeue(json.dumps(again), delay)
        log.warning("notification failed, retrying", extra={**context, "status": status, "delay_s": delay})
    return outcome


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
    session = egress.pinned_session(egress.guard(URL_FIELD, **{URL_FIELD: url}))
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
