"""One attempt at a whole window: its run record, written before any byte, the export into the window's
file, and the record of how the attempt ended (exported, continued by a follow-up, or failed as what
it is: exporter/jobs/failures.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

from .. import telemetry
from ..clock import iso
from ..context import Context
from ..export.destination import Destination
from ..export.formats import fix_types
from ..export.naming import window_path
from ..export.plan import Selection
from ..export.progress import UNREAD, Checkpoints, WindowProgress
from ..export.resume import continuable
from ..export.runner import WindowExport, export_window
from ..integrations.model import Integration
from ..runs import RunRecord, RunStatus
from ..ucd.segments import SegmentRef
from ..windows import Window
from . import stores
from .failures import failure_recorded

log = logging.getLogger(__name__)

# An attempt's run record is written while the export reads where its file stands, and again while its
# last blocks land once its time ran out (docs/benchmarks.md, "a follow-up's fixed cost"). Threads start on
# demand; host.json lets an instance run up to six jobs at once.
_RECORDS = ThreadPoolExecutor(12, thread_name_prefix="record")


class _Unwritten(Exception):
    """The attempt's run record did not land: nothing of the attempt was written, and no failure is recorded
    (there is no record to record it on); the record's own failure is raised."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class FirstRecord:
    """The run record at the integration's next window start as this job first read it (None: there is none).

    Read once per job: it tells whether that window's export began and counts its attempts.
    """

    window_start: int | None
    record: RunRecord | None
    # That window's progress record (and its ETag) as read ahead beside it: a follow-up's (None: not read ahead).
    progress: Callable[[], tuple[WindowProgress, str] | None] | None = None


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
    time_up: Callable[[], object] | None = None,
) -> RunRecord:
    """Export one window into its file and record it; a failure is recorded as what it is, then raised.

    `known`: the window's run record as this job already read it, so it is not read again.

    A window whose time runs out keeps the status `exporting`, with the rows and bytes staged so far
    (only a file whose bytes can be continued: `continuable`; any other is exported whole), written while
    its last blocks land; `time_up()` is called then too (the job's follow-up lease, taken meanwhile).

    The record is written before any byte (from then on the window's bounds and selection are fixed),
    while the export reads where the file stands (its progress, the upload, a Parquet file's notes, the
    first segments): those are reads, and the export's first write waits for the record (`before_writes`).
    """
    record = run_record(ctx, integration, window, selection or integration.selection, known)
    selection = recorded_selection(record)  # a typed file's parameter types fixed with the rest
    resumable = continuable(selection)
    landed = _RECORDS.submit(ctx.runs.put, replace(record))  # a copy: `record` changes as the attempt goes on
    ending: list[Future[object]] = []  # the writes begun when the time ran out

    def stopping(so_far: WindowExport) -> None:
        ending.append(_RECORDS.submit(ctx.runs.put, _so_far(replace(record), so_far)))
        if time_up is not None:
            ending.append(_RECORDS.submit(time_up))

    context = {
        "account": integration.account,
        "integration_id": integration.id,
        "window_start": window.start_unix,
        "window_end": window.end_unix,
        "attempt": record.attempts,
        "delivery": dequeue_count,
    }
    kind = integration.destination.type
    try:
        with (
            telemetry.window_span(
                integration.account, integration.id, window.start_unix, window.end_unix, kind
            ) as span,
            failure_recorded(ctx, record, context, kind, passing=(_Unwritten,)),
        ):
            try:
                # Opening the destination (decrypting its secret) is part of the attempt: its failure is recorded too.
                result = export_window(
                    ctx.ucd,
                    integration.account,
                    integration.id,
                    selection,
                    window,
                    destination(),
                    checkpoints=_checkpoints(ctx, integration, window, record.attempts == 1, known)
                    if resumable
                    else None,
                    out_of_time=out_of_time if resumable else (lambda: False),
                    segments=segments,
                    before_writes=lambda: _landed(landed),
                    time_up=stopping if resumable else None,
                )
            except BaseException:
                # Nothing of this attempt writes after it failed, and a failure is recorded after its record.
                _settled(ending)
                _landed(landed)
                raise
            span.set_attribute("export.rows", result.rows)
            span.set_attribute("export.bytes", result.bytes)
    except _Unwritten as unwritten:
        raise unwritten.error from None
    landed.result()  # in: the export asked before its first write
    _so_far(record, result)
    if not result.complete:
        for written in ending:
            written.result()  # the record of where the window stands, and the lease: written while the blocks landed
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


def _so_far(record: RunRecord, result: WindowExport) -> RunRecord:
    """`record` (changed in place) with the rows and bytes of the file so far, and why it started again if it did."""
    record.rows, record.bytes = result.rows, result.bytes
    if result.restarted:
        record.note = f"started again from the first block: {result.restarted}"
    return record


def _landed(record: Future[None]) -> None:
    """Wait for the attempt's run record to land; raise `_Unwritten` if it did not."""
    try:
        record.result()
    except Exception as error:  # passed on as it is, by export_whole
        raise _Unwritten(error) from error


def _settled(writes: Iterable[Future[object]]) -> None:
    """Wait for writes begun by a failing attempt (their own failures are not this one's)."""
    wait(list(writes))


def _checkpoints(
    ctx: Context, integration: Integration, window: Window, first_attempt: bool, known: FirstRecord | None
) -> Checkpoints:
    """Where this window's progress is recorded, so another invocation continues it (`known`: the job's
    first record, with the window's progress as read ahead, if it was).

    A window's first attempt has none to read: progress is recorded only after an attempt's run record.
    """
    ahead = known.progress if known is not None and known.window_start == window.start_unix else None
    return Checkpoints(
        stores.progress(ctx),
        integration.account,
        integration.id,
        window.start_unix,
        etag=None if first_attempt else UNREAD,
        notes=stores.notes(ctx, integration, window),
        ahead=ahead,
    )
