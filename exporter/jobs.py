"""Scheduler (timer) and worker (queue trigger): fan-out and exactly-once window delivery (I1-I6).

Exactly once rests on three facts: a window's file name and bytes are a pure function of stored
data, so a repeated export rewrites the same file; the file is committed before the run record and
before `last_success_end` moves; and `last_success_end` only moves through an ETag-conditional write
from the window's start to its end, so two workers cannot both advance it or skip a window.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from . import telemetry
from .clock import from_unix, iso
from .context import Context
from .errors import (
    ConflictError, CredentialError, DestinationError, ExporterError, InputError, NotFoundError, TransientError,
)
from .export.naming import window_path
from .export.plan import Selection
from .export.runner import export_window
from .integrations.model import Integration, Status
from .runs import EXPORTED, FAILED, POISONED, RETRYING, RunRecord
from .windows import Window, backlog, due_windows, export_lag_seconds, is_due, next_start

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportJob:
    """A queue message: which integration to bring up to date. Never carries a secret."""

    account: str
    integration_id: str
    reason: str = "scheduled"

    def to_message(self) -> str:
        return json.dumps({"account": self.account, "integration_id": self.integration_id, "reason": self.reason})

    @classmethod
    def from_message(cls, body: str) -> "ExportJob":
        data = json.loads(body)
        return cls(str(data["account"]), str(data["integration_id"]), str(data.get("reason", "scheduled")))


# ------------------------------------------------------------------ scheduler


def schedule(ctx: Context) -> dict[str, Any]:
    """Queue one job per active integration with a due window that is not already queued or running."""
    now = ctx.clock.now()
    queued, busy, windows_due = [], 0, 0
    queue = ctx.storage.queue()
    for integration in ctx.repo.all_unpaused():
        anchor = integration.activated_at
        if anchor is None:
            continue
        telemetry.record_export_lag(integration.account, integration.id, export_lag_seconds(anchor, integration.last_success_end, now))
        if integration.status != Status.ACTIVE:
            continue
        if not is_due(anchor, integration.last_success_end, integration.frequency_hours, now, ctx.settings.settle_seconds):
            continue
        if integration.queued_until and integration.queued_until > now:
            busy += 1
            continue
        lease = now + timedelta(seconds=ctx.settings.lease_seconds)
        if not _take_lease(ctx, integration, lease):
            continue  # changed under us: the next minute sees it again
        queue.send_message(ExportJob(integration.account, integration.id).to_message())
        queued.append(integration.id)
        windows_due += backlog(anchor, integration.last_success_end, integration.frequency_hours, now, ctx.settings.settle_seconds)
    return {"queued": len(queued), "already_queued": busy, "windows_due": windows_due, "integrations": queued, "now": iso(now)}


def _take_lease(ctx: Context, integration: Integration, lease: datetime) -> bool:
    """Mark the integration queued until `lease`; True if this scheduler run holds that lease."""
    try:
        ctx.repo.replace(integration.with_changes(queued_until=lease))
        return True
    except NotFoundError:
        return False
    except ConflictError:
        # Another writer won, or our own write landed and its answer was lost (the SDK's retry of it
        # then meets our new ETag): only the stored lease tells which.
        try:
            fresh = ctx.repo.get(integration.account, integration.id)
        except NotFoundError:
            return False
        return fresh.queued_until is not None and iso(fresh.queued_until) == iso(lease)


# ------------------------------------------------------------------ worker


def process_job(ctx: Context, body: str, dequeue_count: int = 1) -> dict[str, Any]:
    """Export the integration's due windows, oldest first, within this invocation's bound.

    Raises TransientError to have the message delivered again (the host's retry and poison queue).
    """
    try:
        job = ExportJob.from_message(body)
    except (ValueError, KeyError, TypeError):
        log.error("dropping a malformed export job message")
        return {"exported": 0, "reason": "malformed message"}
    try:
        integration = ctx.repo.get(job.account, job.integration_id)
    except NotFoundError:
        return {"exported": 0, "reason": "integration deleted"}
    if integration.status != Status.ACTIVE or integration.activated_at is None:
        _release(ctx, integration)
        return {"exported": 0, "reason": f"integration is {integration.status}"}

    started = time.monotonic()
    destination = ctx.destination_for(integration)
    exported: list[dict[str, Any]] = []
    windows = list(due_windows(
        integration.activated_at, integration.last_success_end, integration.frequency_hours,
        ctx.clock.now(), ctx.settings.settle_seconds, ctx.settings.max_windows_per_run,
    ))
    for window in windows:
        if exported and time.monotonic() - started > ctx.settings.max_seconds_per_run:
            break
        try:
            record = _export_one(ctx, integration, window, destination, dequeue_count)
        except (CredentialError, DestinationError) as error:
            _stop(ctx, integration, error)
            return {"exported": len(exported), "windows": exported, "stopped": error.code, "reason": error.message}
        exported.append(record.to_json())
        advanced = _advance(ctx, integration, window)
        if advanced is None or advanced.status != Status.ACTIVE:
            # Paused, stopped or moved by someone else meanwhile: free it for the scheduler at once.
            try:
                _release(ctx, ctx.repo.get(integration.account, integration.id))
            except NotFoundError:
                pass
            return {"exported": len(exported), "windows": exported, "reason": "integration changed concurrently"}
        integration = advanced

    if is_due(integration.activated_at, integration.last_success_end, integration.frequency_hours, ctx.clock.now(), ctx.settings.settle_seconds):
        _follow_up(ctx, integration)
        return {"exported": len(exported), "windows": exported, "follow_up": True}
    _release(ctx, integration)
    return {"exported": len(exported), "windows": exported, "follow_up": False}


def _export_one(ctx: Context, integration: Integration, window: Window, destination, dequeue_count: int) -> RunRecord:
    previous = ctx.runs.get(integration.account, integration.id, window.start_unix)
    attempts = (previous.attempts if previous else 0) + 1
    record = RunRecord(
        integration.account, integration.id, window.start_unix, window.end_unix,
        window_path(integration.destination.prefix, integration.account, integration.id, window),
        status=RETRYING, attempts=attempts, updated_at=iso(ctx.clock.now()), selection=selection_json(integration),
    )
    context = {"account": integration.account, "integration_id": integration.id,
               "window_start": window.start_unix, "window_end": window.end_unix, "attempt": attempts,
               "delivery": dequeue_count}
    with telemetry.window_span(integration.account, integration.id, window.start_unix, window.end_unix) as span:
        try:
            result = _as_exporter_error(
                export_window, ctx.ucd, integration.account, integration.id, integration.selection, window, destination)
        except ExporterError as error:
            record.status = RETRYING if isinstance(error, TransientError) else FAILED
            record.error = error.message
            ctx.runs.put(record)
            if isinstance(error, TransientError):
                telemetry.record_retry(integration.account, integration.id, error.code)
                log.warning("window export failed, will retry", extra={**context, "error": error.message})
            raise
        span.set_attribute("export.rows", result.rows)
        span.set_attribute("export.bytes", result.bytes)
    record.status, record.rows, record.bytes = EXPORTED, result.rows, result.bytes
    record.duration_ms = int(result.duration_s * 1000)
    record.error = ""
    ctx.runs.put(record)
    telemetry.record_window_exported(integration.account, integration.id, result.rows, result.bytes, result.duration_s)
    log.info("window exported", extra={**context, "file": result.path, "rows": result.rows,
                                       "bytes": result.bytes, "duration_ms": record.duration_ms})
    return record


def _as_exporter_error(fn, *args):
    """Failures of our own storage (reading the UCD) are transient: retried, and visible in the run record."""
    try:
        return fn(*args)
    except ExporterError:
        raise
    except Exception as error:  # noqa: BLE001
        raise TransientError(f"internal storage failure while exporting ({type(error).__name__})") from error


def _advance(ctx: Context, integration: Integration, window: Window) -> Integration | None:
    """Move last_success_end from window.start to window.end, conditionally (I5)."""
    for _ in range(10):
        if integration.last_success_end and integration.last_success_end >= window.end:
            return integration  # another worker delivered it (same name, same bytes)
        if next_start(integration.activated_at, integration.last_success_end) != window.start:
            return None
        try:
            return ctx.repo.replace(integration.with_changes(last_success_end=window.end, last_error=None))
        except ConflictError:
            integration = ctx.repo.get(integration.account, integration.id)
    raise TransientError("could not record the delivered window; it will be re-checked")


def _modify(ctx: Context, integration: Integration, *, unless: Callable[[Integration], bool] | None = None,
            **changes: Any) -> Integration | None:
    """Apply worker-owned changes with ETag retries; None if the integration is gone or `unless(fresh)` holds."""
    for _ in range(10):
        if unless is not None and unless(integration):
            return None
        try:
            return ctx.repo.replace(integration.with_changes(**changes))
        except ConflictError:
            try:
                integration = ctx.repo.get(integration.account, integration.id)
            except NotFoundError:
                return None
        except NotFoundError:
            return None
    raise TransientError("the integration keeps changing; the job will be retried")


def _stop(ctx: Context, integration: Integration, error: ExporterError) -> None:
    """A credential or destination error stops delivery at once (I6).

    Unless the customer replaced the destination meanwhile: the error was about the old credentials.
    """
    status = Status.CREDENTIAL_ERROR if isinstance(error, CredentialError) else Status.DESTINATION_ERROR
    stopped = _modify(ctx, integration, unless=lambda fresh: fresh.destination != integration.destination,
                      status=status, last_error=error.message, queued_until=None, updated_at=ctx.clock.now())
    if stopped is None:
        return
    if isinstance(error, CredentialError):
        telemetry.record_credential_error(integration.account, integration.id)
    log.error("integration stopped", extra={"account": integration.account, "integration_id": integration.id,
                                            "status": status, "reason": error.message})


def _release(ctx: Context, integration: Integration) -> None:
    if integration.queued_until is not None:
        _modify(ctx, integration, queued_until=None)


def _follow_up(ctx: Context, integration: Integration) -> None:
    """A long catch-up continues in a new message, so no invocation nears the Functions timeout."""
    lease = ctx.clock.now() + timedelta(seconds=ctx.settings.lease_seconds)
    if _modify(ctx, integration, queued_until=lease) is not None:
        ctx.storage.queue().send_message(ExportJob(integration.account, integration.id, "follow-up").to_message())


def record_poison(ctx: Context, body: str) -> dict[str, Any]:
    """A job that kept failing: make it visible in the run history and free the integration for the scheduler."""
    try:
        job = ExportJob.from_message(body)
        integration = ctx.repo.get(job.account, job.integration_id)
    except (ValueError, KeyError, TypeError, NotFoundError):
        return {"recorded": False}
    telemetry.record_poison_message(integration.account, integration.id)
    start = next_start(integration.activated_at, integration.last_success_end) if integration.activated_at else None
    if start is not None:
        window = Window(start, start + timedelta(hours=integration.frequency_hours))
        previous = ctx.runs.get(integration.account, integration.id, window.start_unix)
        ctx.runs.put(RunRecord(
            integration.account, integration.id, window.start_unix, window.end_unix,
            previous.file if previous else window_path(integration.destination.prefix, integration.account, integration.id, window),
            status=POISONED, attempts=previous.attempts if previous else 0,
            error=f"gave up after {ctx.settings.max_dequeue_count} deliveries: {previous.error if previous else 'unknown error'}",
            updated_at=iso(ctx.clock.now()),
        ))
    _modify(ctx, integration, queued_until=None, last_error="export job moved to the poison queue; it is retried on the next schedule")
    return {"recorded": True, "integration_id": integration.id}



def selection_json(integration: Integration) -> str:
    """What a window was exported with, kept on its run record for replays."""
    return json.dumps(integration.selection.to_json())


def replay_window(ctx: Context, account: str, integration_id: str, start_unix: Any) -> dict[str, Any]:
    """Re-export one delivered window under the same name with the same bytes; state never moves.

    The window's bounds and selection come from its run record, so a later change of frequency or
    selection does not change what a replay writes.
    """
    if isinstance(start_unix, bool) or not isinstance(start_unix, int):
        raise InputError("must be the window's start as Unix seconds (see `integrations runs`)", field="start")
    integration = ctx.repo.get(account, integration_id)
    record = ctx.runs.get(account, integration_id, start_unix)
    if record is None or record.status != EXPORTED:
        raise NotFoundError(f"no delivered window starts at {start_unix}; only delivered windows can be replayed", field="start")
    selection = Selection.from_json(json.loads(record.selection)) if record.selection else integration.selection
    window = Window(from_unix(record.window_start), from_unix(record.window_end))
    with telemetry.window_span(account, integration_id, window.start_unix, window.end_unix):
        result = export_window(ctx.ucd, account, integration_id, selection, window, ctx.destination_for(integration))
    log.info("window replayed", extra={"account": account, "integration_id": integration_id,
                                       "window_start": window.start_unix, "file": result.path, "rows": result.rows})
    return {"replayed": True, "file": result.path, "window_start": window.start_unix, "window_end": window.end_unix,
            "rows": result.rows, "bytes": result.bytes}
