"""One attempt at a whole window: its run record, written before any byte, the export into the window's
file, and the record of how the attempt ended (exported, continued by a follow-up, or failed as what
it is: exporter/jobs/failures.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .. import telemetry
from ..clock import iso
from ..context import Context
from ..export.destination import Destination
from ..export.formats import fix_types
from ..export.naming import window_path
from ..export.plan import Selection
from ..export.progress import UNREAD, Checkpoints
from ..export.resume import continuable
from ..export.runner import export_window
from ..integrations.model import Integration
from ..runs import RunRecord, RunStatus
from ..ucd.segments import SegmentRef
from ..windows import Window
from . import stores
from .failures import failure_recorded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FirstRecord:
    """The run record at the integration's next window start as this job first read it (None: there is none).

    Read once per job: it tells whether that window's export began and counts its attempts.
    """

    window_start: int | None
    record: RunRecord | None


def run_record(
    ctx: Context, integration: Integration, window: Window, selection: Selection, known: FirstRecord | None = None
) -> RunRecord:
    """This attempt's run record, counting the attempts before it (`known`: the previous one, already read).

    It fixes the window's selection, a typed file's parameter types too (from the catalog, here and only
    here for a window's export), so retries, parts and replays export what it says (`recorded_selection`).
    """
    selection = fix_types(selection, lambda: ctx.ucd.catalog(integration.account))
    previous = known.record if known else ctx.runs.get(integration.account, integration.id, window.start_unix)
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
        note=previous.note if previous else "",  # a restart by an earlier attempt still befell the window's file
    )


def selection_of(record: RunRecord) -> Selection | None:
    """The selection a window's run record fixed (None: an old record without one)."""
    return recorded_selection(record) if record.selection else None


def recorded_selection(record: RunRecord) -> Selection:
    """The selection a run record of this worker's fixed (`run_record` always writes one)."""
    return Selection.from_json(json.loads(record.selection))


def export_whole(
    ctx: Context,
    integration: Integration,
    window: Window,
    selection: Selection | None,
    destination: Callable[[], Destination],
    dequeue_count: int,
    out_of_time: Callable[[], bool],
    segments: Callable[[], list[SegmentRef]] | None = None,
    known: FirstRecord | None = None,
) -> RunRecord:
    """Export one window into its file and record it; a failure is recorded as what it is, then raised.

    `known`: the window's run record as this job already read it, so it is not read again.

    A window whose time runs out keeps the status `exporting`, with the rows and bytes staged so far
    (only a file whose bytes can be continued: `continuable`; any other is exported whole).
    """
    record = run_record(ctx, integration, window, selection or integration.selection, known)
    selection = recorded_selection(record)  # a typed file's parameter types fixed with the rest
    resumable = continuable(selection)
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
    with (
        telemetry.window_span(integration.account, integration.id, window.start_unix, window.end_unix, kind) as span,
        failure_recorded(ctx, record, context, kind),
    ):
        # Opening the destination (decrypting its secret) is part of the attempt, so its failure is recorded too.
        result = export_window(
            ctx.ucd,
            integration.account,
            integration.id,
            selection,
            window,
            destination(),
            checkpoints=_checkpoints(ctx, integration, window, record.attempts == 1) if resumable else None,
            out_of_time=out_of_time if resumable else (lambda: False),
            segments=segments,
        )
        span.set_attribute("export.rows", result.rows)
        span.set_attribute("export.bytes", result.bytes)
    record.rows, record.bytes = result.rows, result.bytes
    if result.restarted:
        record.note = f"started again from the first block: {result.restarted}"
    if not result.complete:
        ctx.runs.put(record)
        log.info("window continues in a follow-up", extra={**context, "rows": result.rows, "bytes": result.bytes})
        return record
    record.status = RunStatus.EXPORTED
    record.sha256 = result.sha256 or ""  # delivery hook (issue 25): the audit and notifications read it
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


def _checkpoints(ctx: Context, integration: Integration, window: Window, first_attempt: bool) -> Checkpoints:
    """Where this window's progress is recorded, so another invocation continues it.

    A window's first attempt has none to read: progress is recorded only after an attempt's run record.
    """
    return Checkpoints(
        stores.progress(ctx),
        integration.account,
        integration.id,
        window.start_unix,
        etag=None if first_attempt else UNREAD,
        notes=stores.notes(ctx, integration, window),
    )
