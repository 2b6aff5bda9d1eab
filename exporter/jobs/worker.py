"""The worker (queue trigger): export an integration's due windows, oldest first, exactly once.

Exactly once rests on three facts: a window's file name and bytes are a pure function of stored
data, so a repeated export rewrites the same file; the file is committed before the run record and
before `last_success_end` moves; and `last_success_end` only moves through an ETag-conditional write
from the window's start to its end, so two workers cannot both advance it or skip a window
(docs/invariants.md).
"""

from __future__ import annotations

import functools
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError

from .. import telemetry
from ..clock import from_unix, iso, to_unix
from ..context import Context
from ..errors import (
    ConfigurationError,
    CredentialError,
    DestinationError,
    ExporterError,
    InternalError,
    NotFoundError,
    TransientError,
)
from ..export.destination import Destination
from ..export.formats import fix_types
from ..export.naming import window_path
from ..export.plan import Selection
from ..export.runner import export_window
from ..integrations.model import Integration, Status
from ..logs import redact
from ..runs import RunRecord, RunStatus
from ..windows import Window, due_windows, is_due, next_start
from .messages import ExportJob
from .state import conditionally, modify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """What one delivery of a job did."""

    windows: tuple[RunRecord, ...] = ()  # exported by this delivery, oldest first
    follow_up: bool = False  # a follow-up message continues the catch-up
    stopped: str | None = None  # the error code that stopped the integration (credential or destination)
    reason: str | None = None  # why the job ended before bringing the integration up to date

    @property
    def exported(self) -> int:
        return len(self.windows)

    def to_json(self) -> dict[str, Any]:
        return {
            "exported": self.exported,
            "windows": [w.to_json() for w in self.windows],
            "follow_up": self.follow_up,
            "stopped": self.stopped,
            "reason": self.reason,
        }


def process_job(ctx: Context, body: str, dequeue_count: int = 1) -> JobOutcome:
    """Export the integration's due windows, oldest first, within this invocation's bound.

    Raises to have the message delivered again (the host's retry, then the poison queue): a transient
    fault may pass, and a bug or a configuration error is retried too, but recorded as what it is.
    """
    try:
        job = ExportJob.from_message(body)
    except (ValueError, KeyError, TypeError):
        log.error("dropping a malformed export job message")
        return JobOutcome(reason="malformed message")
    try:
        integration = ctx.repo.get(job.account, job.integration_id)
    except NotFoundError:
        return JobOutcome(reason="integration deleted")
    if integration.status != Status.ACTIVE or integration.activated_at is None:
        _release(ctx, integration)
        return JobOutcome(reason=f"integration is {integration.status}")

    activated = integration.activated_at  # never moves once set
    started = time.monotonic()
    destination = functools.cache(functools.partial(ctx.destination_for, integration))  # opened at the first window
    exported: list[RunRecord] = []
    begun = _begun(ctx, integration)
    windows = list(
        due_windows(
            activated,
            integration.last_success_end,
            integration.frequency_hours,
            ctx.clock.now(),
            ctx.settings.settle_seconds,
            ctx.settings.max_windows_per_run,
            begun_end=from_unix(begun.window_end) if begun else None,
        )
    )
    for window in windows:
        if exported and time.monotonic() - started > ctx.settings.max_seconds_per_run:
            break
        selection = _selection_of(begun) if begun and begun.window_start == window.start_unix else integration.selection
        try:
            exported.append(_export_one(ctx, integration, window, selection, destination, dequeue_count))
        except (CredentialError, DestinationError) as error:
            _stop(ctx, integration, error)
            return JobOutcome(tuple(exported), stopped=error.code, reason=error.message)
        advanced = _advance(ctx, integration, window)
        if advanced is None or advanced.status != Status.ACTIVE:
            # Paused, stopped or moved by someone else meanwhile: free it for the scheduler at once.
            try:
                _release(ctx, ctx.repo.get(integration.account, integration.id))
            except NotFoundError:
                pass
            return JobOutcome(tuple(exported), reason="integration changed concurrently")
        integration = advanced

    if is_due(
        activated,
        integration.last_success_end,
        integration.frequency_hours,
        ctx.clock.now(),
        ctx.settings.settle_seconds,
    ):
        _follow_up(ctx, integration)
        return JobOutcome(tuple(exported), follow_up=True)
    _release(ctx, integration)
    return JobOutcome(tuple(exported))


def _begun(ctx: Context, integration: Integration) -> RunRecord | None:
    """The run record of a window whose export began at the next start, if any.

    Its file may be committed even though `last_success_end` never moved (a worker died between the
    two), so that window keeps the bounds and the selection it began with: exporting it again gives
    the same name and bytes, where the current frequency or selection could overlap the committed file.
    """
    if integration.activated_at is None:
        return None
    start = next_start(integration.activated_at, integration.last_success_end)
    record = ctx.runs.get(integration.account, integration.id, to_unix(start))
    return record if record is not None and record.attempts > 0 and record.window_end > record.window_start else None


def _selection_of(record: RunRecord) -> Selection | None:
    return Selection.from_json(json.loads(record.selection)) if record.selection else None


def _export_one(
    ctx: Context,
    integration: Integration,
    window: Window,
    selection: Selection | None,
    destination: Callable[[], Destination],
    dequeue_count: int,
) -> RunRecord:
    """Export one window into its file and record it; a failure is recorded as what it is, then raised."""
    # A typed file's parameter types are fixed here, from the catalog, and kept on the run record with the rest.
    selection = fix_types(selection or integration.selection, lambda: ctx.ucd.catalog(integration.account))
    record = _run_record(ctx, integration, window, selection)
    ctx.runs.put(record)  # before any byte: from here on this window's bounds and selection are fixed
    context = {
        "account": integration.account,
        "integration_id": integration.id,
        "window_start": window.start_unix,
        "window_end": window.end_unix,
        "attempt": record.attempts,
        "delivery": dequeue_count,
    }
    kind = integration.destination.type
    with telemetry.window_span(integration.account, integration.id, window.start_unix, window.end_unix, kind) as span:
        try:
            # Opening the destination (decrypting its secret) is part of the attempt, so its failure is recorded too.
            result = export_window(ctx.ucd, integration.account, integration.id, selection, window, destination())
        except Exception as raw:
            error = classify_failure(raw)
            _record_failure(ctx, record, error, raw, context, kind)
            if error is raw:
                raise
            raise error from raw
        span.set_attribute("export.rows", result.rows)
        span.set_attribute("export.bytes", result.bytes)
    record.status, record.rows, record.bytes = RunStatus.EXPORTED, result.rows, result.bytes
    record.duration_ms = int(result.duration_s * 1000)
    record.error = ""
    ctx.runs.put(record)
    telemetry.record_window_exported(
        integration.account, integration.id, result.rows, result.bytes, result.duration_s, kind
    )
    log.info(
        "window exported",
        extra={
            **context,
            "file": result.path,
            "rows": result.rows,
            "bytes": result.bytes,
            "duration_ms": record.duration_ms,
        },
    )
    return record


def _run_record(ctx: Context, integration: Integration, window: Window, selection: Selection) -> RunRecord:
    """This attempt's run record, counting the attempts before it."""
    previous = ctx.runs.get(integration.account, integration.id, window.start_unix)
    return RunRecord(
        integration.account,
        integration.id,
        window.start_unix,
        window.end_unix,
        window_path(integration.destination.prefix, integration.account, integration.id, window, selection.format),
        status=RunStatus.EXPORTING,
        attempts=(previous.attempts if previous else 0) + 1,
        updated_at=iso(ctx.clock.now()),
        selection=json.dumps(selection.to_json()),  # what a replay, or a retry of this window, exports again
    )


def classify_failure(error: Exception) -> ExporterError:
    """What a failure means: ours say so; our own storage's SDK errors may pass; anything else is a bug."""
    if isinstance(error, ExporterError):
        return error
    if isinstance(error, AzureError):  # reading the UCD; the destination classifies its own
        return TransientError(f"internal storage failure while exporting ({type(error).__name__})")
    return InternalError(f"internal error ({type(error).__name__})")


def failure_text(error: ExporterError) -> str:
    """A run record's error: safe words, prefixed by the cause where the message alone does not name it."""
    if isinstance(error, ConfigurationError):
        return f"configuration error: {error.message}"
    return error.message


def _record_failure(
    ctx: Context,
    record: RunRecord,
    error: ExporterError,
    raw: Exception,
    context: dict[str, Any],
    destination_type: str | None = None,
) -> None:
    """Keep a failed attempt on its run record, count it, and log it as what it is: a fault, a stop or a bug."""
    transient = isinstance(error, TransientError)
    record.status = RunStatus.RETRYING if transient else RunStatus.FAILED
    record.error = failure_text(error)
    ctx.runs.put(record)
    extra = {**context, "error": record.error}
    if transient:
        telemetry.record_retry(record.account, record.integration_id, error.code, destination_type)
        log.warning("window export failed, will retry", extra=extra)
    elif isinstance(error, InternalError):
        telemetry.record_internal_error(record.account, record.integration_id, type(raw).__name__)
        # The traceback is what a fix needs; redacted, as any text that did not come from our own messages.
        trace = redact("".join(traceback.format_exception(raw)))
        log.error(
            "bug: unexpected %s while exporting a window; redelivery tries again, but it needs a fix",
            type(raw).__name__,
            extra={**extra, "traceback": trace},
        )
    elif not isinstance(error, (CredentialError, DestinationError)):  # those stop the integration, logged there
        log.error("window export failed (%s); redelivery tries again", error.code, extra=extra)


def _advance(ctx: Context, integration: Integration, window: Window) -> Integration | None:
    """Move last_success_end from window.start to window.end, conditionally (docs/invariants.md: state).

    None if the integration moved elsewhere meanwhile (a frequency change, say): nothing to advance.
    """

    def attempt(current: Integration) -> Integration | None:
        if current.last_success_end and current.last_success_end >= window.end:
            return current  # delivered: by another worker (same name, same bytes), or our own lost answer
        if current.activated_at is None or next_start(current.activated_at, current.last_success_end) != window.start:
            return None
        return ctx.repo.replace(current.with_changes(last_success_end=window.end, last_error=None))

    return conditionally(ctx, integration, attempt)


def _stop(ctx: Context, integration: Integration, error: ExporterError) -> None:
    """A credential or destination error stops delivery at once (docs/invariants.md: credential errors).

    Unless the customer replaced the destination meanwhile: the error was about the old credentials.
    """
    status = Status.CREDENTIAL_ERROR if isinstance(error, CredentialError) else Status.DESTINATION_ERROR
    stopped = modify(
        ctx,
        integration,
        unless=lambda fresh: fresh.destination != integration.destination,
        status=status,
        last_error=error.message,
        queued_until=None,
        updated_at=ctx.clock.now(),
    )
    if stopped is None:
        return
    if isinstance(error, CredentialError):
        telemetry.record_credential_error(integration.account, integration.id, integration.destination.type)
    log.error(
        "integration stopped",
        extra={
            "account": integration.account,
            "integration_id": integration.id,
            "status": status,
            "reason": error.message,
        },
    )


def _release(ctx: Context, integration: Integration) -> None:
    if integration.queued_until is not None:
        modify(ctx, integration, queued_until=None)


def _follow_up(ctx: Context, integration: Integration) -> None:
    """A long catch-up continues in a new message, so no invocation nears the Functions timeout."""
    lease = ctx.clock.now() + timedelta(seconds=ctx.settings.lease_seconds)
    if modify(ctx, integration, queued_until=lease) is not None:
        ctx.storage.queue().send_message(ExportJob(integration.account, integration.id, "follow-up").to_message())
