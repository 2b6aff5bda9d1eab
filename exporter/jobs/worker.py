"""The worker (queue trigger): export an integration's due windows, oldest first, exactly once.

Exactly once rests on three facts: a window's file name and bytes are a pure function of stored
data, so a repeated export rewrites the same file; the file is committed before the run record and
before `last_success_end` moves; and `last_success_end` only moves through an ETag-conditional write
from the window's start to its end, so two workers cannot both advance it or skip a window
(docs/invariants.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

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
from ..export.destination import Destination, PartPlacement, SplitDestination, UploadLost
from ..export.formats import fix_types
from ..export.naming import window_path
from ..export.plan import Selection
from ..export.progress import (
    UNREAD,
    Checkpoints,
    ProgressRepo,
    StagedNotes,
    WindowProgress,
    notes_prefix,
    staged_prefix,
)
from ..export.runner import Target, WindowExport, continuable, export_window, keeps_notes, splittable
from ..integrations.model import Integration, Status
from ..logs import redact
from ..notifications import sender as notifications
from ..runs import RunRecord, RunStatus
from ..ucd.reader import ReadPosition
from ..ucd.segments import SegmentRef
from ..windows import Window, due_windows, is_due, next_start
from .messages import ExportJob
from .relay import StagingArea, relay, staged_name
from .split import RELAY_PART, SplitPlan, SplitRepo, plan_parts
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
    if job.part is not None and job.window_start is not None:
        return _process_part(ctx, integration, job.window_start, job.part, dequeue_count)
    if integration.status != Status.ACTIVE or integration.activated_at is None:
        _release(ctx, integration)
        return JobOutcome(reason=f"integration is {integration.status}")

    activated = integration.activated_at  # never moves once set
    deadline = ctx.clock.now() + timedelta(seconds=ctx.settings.max_seconds_per_run)
    out_of_time = lambda: ctx.clock.now() >= deadline  # noqa: E731 - the injected clock: tests move it
    destination = functools.cache(functools.partial(ctx.destination_for, integration))  # opened at the first window
    exported: list[RunRecord] = []
    first = _first_record(ctx, integration)
    begun = _begun(first)
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
        if exported and out_of_time():
            break
        selection = _selection_of(begun) if begun and begun.window_start == window.start_unix else integration.selection
        segments = _listed_ahead(ctx, integration.account, window)
        try:
            plan = _split_plan(ctx, integration, window, selection, destination, segments)
            if plan is not None:
                committed = _commit_split(ctx, integration, window, plan, destination(), out_of_time)
                if committed is None:  # parts still to export: their jobs finish the window
                    _queue_parts(ctx, integration, window, plan)
                    return JobOutcome(tuple(exported), reason=f"the window is exported in {plan.parts} parts")
                record = committed
            else:
                known = first if window.start_unix == first.window_start else None
                record = _export_one(
                    ctx, integration, window, selection, destination, dequeue_count, out_of_time, segments, known
                )
        except (CredentialError, DestinationError) as error:
            _stop(ctx, integration, error)
            return JobOutcome(tuple(exported), stopped=error.code, reason=error.message)
        except UploadLost:  # the parts' shared upload is gone: the window is planned again by a follow-up
            _forget_split(ctx, integration, window, plan)
            _follow_up(ctx, integration)
            return JobOutcome(tuple(exported), follow_up=True, reason="the split window starts again")
        if record.status == RunStatus.EXPORTING:  # the time ran out inside the window: a follow-up continues it
            _follow_up(ctx, integration)
            return JobOutcome(tuple(exported), follow_up=True, reason="the window continues in a follow-up")
        exported.append(record)
        advanced = _advance(ctx, integration, window)
        if advanced is not None:
            notifications.delivered(ctx, advanced, record)  # delivery hook (issue 25): only queued, never waited on
        if advanced is None or advanced.status != Status.ACTIVE:
            return _changed_concurrently(ctx, integration, exported)
        _forget_split(ctx, integration, window, plan)
        _forget_notes(ctx, integration, window, selection)
        integration = advanced
    return _hand_on(ctx, integration, exported)


def _changed_concurrently(ctx: Context, integration: Integration, exported: list[RunRecord]) -> JobOutcome:
    """Paused, stopped or moved by someone else meanwhile: free it for the scheduler at once."""
    try:
        _release(ctx, ctx.repo.get(integration.account, integration.id))
    except NotFoundError:
        pass
    return JobOutcome(tuple(exported), reason="integration changed concurrently")


def _hand_on(ctx: Context, integration: Integration, exported: list[RunRecord]) -> JobOutcome:
    """After the last window of a job: a follow-up continues a catch-up, else the integration is free again."""
    if integration.activated_at is not None and is_due(
        integration.activated_at,
        integration.last_success_end,
        integration.frequency_hours,
        ctx.clock.now(),
        ctx.settings.settle_seconds,
    ):
        _follow_up(ctx, integration)
        return JobOutcome(tuple(exported), follow_up=True)
    _release(ctx, integration)
    return JobOutcome(tuple(exported))


# ------------------------------------------------------------------ split windows (exporter/jobs/split.py)


def _splits(ctx: Context) -> SplitRepo:
    return SplitRepo(ctx.runs.table, ctx.integrations.secrets)


def _progress(ctx: Context) -> ProgressRepo:
    return ProgressRepo(ctx.runs.table, ctx.integrations.secrets)


def _staging(ctx: Context) -> StagingArea:
    return StagingArea(ctx.storage.staging_container())


def _split_plan(
    ctx: Context,
    integration: Integration,
    window: Window,
    selection: Selection | None,
    destination: Callable[[], Destination],
    segments: Callable[[], list[SegmentRef]],
) -> SplitPlan | None:
    """The window's split plan: the one already made, or a new one if the window is large enough; None: whole.

    A window already begun whole (its progress recorded) stays whole; so does every window of a
    destination that cannot take parts and every file that cannot be written in parts (`splittable`:
    Parquet, or a manifest).
    """
    account, iid = integration.account, integration.id
    plan = _splits(ctx).get(account, iid, window.start_unix)
    if plan is not None:
        return plan
    selection = selection or integration.selection
    if not splittable(selection):
        return None
    try:
        listed = segments()
    except AzureError:
        return None  # exported whole: the export's own read meets the fault again and records it
    firsts = plan_parts(listed, ctx.settings.split_bytes, selection.format)
    if not firsts:
        return None
    if _progress(ctx).get(account, iid, window.start_unix) is not None:
        return None
    target = destination()  # opened only for a window to split: opening it is part of an export's attempt
    if not hasattr(target, "begin_split"):  # a SplitDestination
        return None
    path = window_path(target.prefix, account, iid, window, selection.format)
    upload = cast(SplitDestination, target).begin_split(path)
    if upload is None:
        return None
    # Bounds and selection fixed, a typed file's parameter types too: every part, and a replay, reads them here.
    selection = fix_types(selection, lambda: ctx.ucd.catalog(account))
    ctx.runs.put(_run_record(ctx, integration, window, selection))
    plan = _splits(ctx).create(account, iid, window.start_unix, SplitPlan(path, firsts, upload))
    log.info("window split into parts", extra={"account": account, "integration_id": iid, "parts": plan.parts})
    return plan


def _queue_parts(ctx: Context, integration: Integration, window: Window, plan: SplitPlan) -> None:
    """A job per part not yet complete; the integration stays leased while they run."""
    modify(ctx, integration, queued_until=ctx.clock.now() + timedelta(seconds=ctx.settings.lease_seconds))
    queue = ctx.storage.queue()
    for part in range(plan.parts):
        progress = _progress(ctx).get(integration.account, integration.id, window.start_unix, part)
        if progress is None or not progress.complete:
            queue.send_message(_part_job(integration, window.start_unix, part).to_message())


def _part_job(integration: Integration, window_start: int, part: int) -> ExportJob:
    return ExportJob(integration.account, integration.id, "part", window_start, part)


def _process_part(ctx: Context, integration: Integration, window_start: int, part: int, deliveries: int) -> JobOutcome:
    """Export one part of a split window; the worker that completes the last part commits the file."""
    plan = _splits(ctx).get(integration.account, integration.id, window_start)
    record = ctx.runs.get(integration.account, integration.id, window_start)
    if plan is None or record is None or part >= plan.parts:
        return JobOutcome(reason="the split window is already committed")
    if integration.status != Status.ACTIVE:
        return JobOutcome(reason=f"integration is {integration.status}")  # resuming queues the parts again
    window = Window(from_unix(record.window_start), from_unix(record.window_end))
    deadline = ctx.clock.now() + timedelta(seconds=ctx.settings.max_seconds_per_run)
    out_of_time = lambda: ctx.clock.now() >= deadline  # noqa: E731 - the injected clock: tests move it
    destination = ctx.destination_for(integration)
    try:
        result = _export_part(ctx, integration, record, window, plan, part, destination, out_of_time, deliveries)
        if not result.complete:
            ctx.storage.queue().send_message(_part_job(integration, window_start, part).to_message())
            return JobOutcome(follow_up=True, reason=f"part {part} continues in a follow-up")
        committed = _commit_split(ctx, integration, window, plan, destination, out_of_time)
    except (CredentialError, DestinationError) as error:
        _stop(ctx, integration, error)
        return JobOutcome(stopped=error.code, reason=error.message)
    except UploadLost:
        # The parts' shared upload is gone (aborted, or expired after a week): the window is planned again.
        log.warning("the upload of a split window is gone; it is split again", extra={"account": integration.account})
        _forget_split(ctx, integration, window, plan)
        _follow_up(ctx, integration)
        return JobOutcome(follow_up=True, reason="the split window starts again")
    if committed is None:
        return JobOutcome(reason=f"part {part} exported")
    if committed.status == RunStatus.EXPORTING:
        _follow_up(ctx, integration)
        return JobOutcome(follow_up=True, reason="the relay of the window continues in a follow-up")
    advanced = _advance(ctx, integration, window)
    if advanced is None or advanced.status != Status.ACTIVE:
        return _changed_concurrently(ctx, integration, [committed])
    _forget_split(ctx, integration, window, plan)
    return _hand_on(ctx, advanced, [committed])


def _export_part(
    ctx: Context,
    integration: Integration,
    record: RunRecord,
    window: Window,
    plan: SplitPlan,
    part: int,
    destination: Destination,
    out_of_time: Callable[[], bool],
    deliveries: int,
) -> WindowExport:
    """Stage one part's blocks where the destination places them; a failure is recorded on the window's run."""
    placement = cast(SplitDestination, destination).place_part(plan.path, part)
    if placement.relayed:  # a blob of its own in the service's staging container, relayed at the commit
        staged = staged_name(integration.account, integration.id, window.start_unix, part)
        placement = PartPlacement(staged, 0, own_object=True)
        destination = cast(Destination, _staging(ctx))  # the runner only stages, resumes and commits blocks
    last = part == plan.parts - 1
    target = Target(
        placement.path,
        first_index=placement.first_index,
        header=part == 0,
        start=ReadPosition(plan.firsts[part], 0),
        until=plan.until(part),
        commit=placement.own_object,
        min_last_block=0 if last else placement.min_last_block,
        joins=plan.upload if plan.upload.handle else None,
    )
    checkpoints = Checkpoints(_progress(ctx), integration.account, integration.id, window.start_unix, part)
    selection = _selection_of(record) or integration.selection
    try:
        return export_window(
            ctx.ucd,
            integration.account,
            integration.id,
            selection,
            window,
            destination,
            checkpoints=checkpoints,
            out_of_time=out_of_time,
            target=target,
        )
    except UploadLost:
        raise  # not a failure of this part: the split starts again (_process_part)
    except Exception as raw:
        error = classify_failure(raw)
        context = {
            "account": integration.account,
            "integration_id": integration.id,
            "part": part,
            "delivery": deliveries,
        }
        _record_failure(ctx, dataclasses.replace(record), error, raw, context, integration.destination.type)
        if error is raw:
            raise
        raise error from raw


def _commit_split(
    ctx: Context,
    integration: Integration,
    window: Window,
    plan: SplitPlan,
    destination: Destination,
    out_of_time: Callable[[], bool],
) -> RunRecord | None:
    """Once every part is staged, one worker (the one whose ETag claim wins) commits the file; None otherwise.

    A relayed file whose time runs out answers its run record still `exporting`: a follow-up continues it.
    """
    account, iid = integration.account, integration.id
    parts = [_progress(ctx).get(account, iid, window.start_unix, p) for p in range(plan.parts)]
    done = [p for p in parts if p is not None and p.complete]
    if len(done) < plan.parts:
        return None
    claim = _splits(ctx).claim_commit(account, iid, window.start_unix, ctx.clock.now(), ctx.settings.lease_seconds)
    if claim is None:
        return None
    try:
        joined = _join_parts(ctx, integration, window, plan, done, destination, out_of_time)
    except Exception:
        _splits(ctx).release_commit(account, iid, window.start_unix, claim)  # the redelivery claims at once
        raise
    record = ctx.runs.get(account, iid, window.start_unix)
    if record is None:
        raise InternalError("a split window lost its run record")
    record.error = ""
    record.updated_at = iso(ctx.clock.now())
    if not joined:
        _splits(ctx).release_commit(account, iid, window.start_unix, claim)  # the follow-up claims at once
        record.status = RunStatus.EXPORTING
        ctx.runs.put(record)
        return record
    record.status = RunStatus.EXPORTED
    record.rows, record.bytes = sum(p.rows for p in done), sum(p.bytes for p in done)
    ctx.runs.put(record)
    kind = integration.destination.type
    telemetry.record_window_exported(account, iid, record.rows, record.bytes, 0.0, kind)
    log.info("window exported in parts", extra={"account": account, "integration_id": iid, "parts": plan.parts})
    return record


def _join_parts(
    ctx: Context,
    integration: Integration,
    window: Window,
    plan: SplitPlan,
    done: list[WindowProgress],
    destination: Destination,
    out_of_time: Callable[[], bool],
) -> bool:
    """Make the staged parts the file, in order: committed in place, or relayed (GCS); False: the relay's time ran out."""
    split = cast(SplitDestination, destination)
    if not split.place_part(plan.path, 0).relayed:
        split.commit_parts(plan.path, plan.upload, [p.blocks for p in done])
        return True
    account, iid, start = integration.account, integration.id, window.start_unix
    sources = [(staged_name(account, iid, start, p), part.bytes) for p, part in enumerate(done)]
    checkpoints = Checkpoints(_progress(ctx), account, iid, start, RELAY_PART)
    return relay(_staging(ctx), destination, plan.path, sources, checkpoints, out_of_time)


def _forget_split(ctx: Context, integration: Integration, window: Window, plan: SplitPlan | None) -> None:
    """After the advance: the plan and its parts' progress are of no further use."""
    if plan is None:
        return
    account, iid, start = integration.account, integration.id, window.start_unix
    for part in [*range(plan.parts), RELAY_PART]:
        _progress(ctx).clear(account, iid, start, part)
    _splits(ctx).clear(account, iid, start)
    _staging(ctx).remove(staged_prefix(account, iid, start))  # a relayed file's parts (GCS); best effort


@dataclass(frozen=True)
class FirstRecord:
    """The run record at the integration's next window start as this job first read it (None: there is none).

    Read once per job: it tells whether that window's export began (`_begun`) and counts its attempts.
    """

    window_start: int | None
    record: RunRecord | None


def _first_record(ctx: Context, integration: Integration) -> FirstRecord:
    if integration.activated_at is None:
        return FirstRecord(None, None)
    start = to_unix(next_start(integration.activated_at, integration.last_success_end))
    return FirstRecord(start, ctx.runs.get(integration.account, integration.id, start))


def _begun(first: FirstRecord) -> RunRecord | None:
    """The run record of a window whose export began at the next start, if any.

    Its file may be committed even though `last_success_end` never moved (a worker died between the
    two), so that window keeps the bounds and the selection it began with: exporting it again gives
    the same name and bytes, where the current frequency or selection could overlap the committed file.
    """
    record = first.record
    return record if record is not None and record.attempts > 0 and record.window_end > record.window_start else None


def _selection_of(record: RunRecord) -> Selection | None:
    return Selection.from_json(json.loads(record.selection)) if record.selection else None


# Threads start on demand; host.json lets an instance run up to six jobs at once (batchSize + newBatchThreshold).
_LISTING = ThreadPoolExecutor(8, thread_name_prefix="listing")


def _listed_ahead(ctx: Context, account: str, window: Window) -> Callable[[], list[SegmentRef]]:
    """The window's segments, listed in the background from now on while the window's records are read.

    A due window's segments never change, so one listing serves the split decision and the read.
    """
    return _LISTING.submit(ctx.ucd.segments, account, window.start, window.end).result


def _export_one(
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
    # A typed file's parameter types are fixed here, from the catalog, and kept on the run record with the rest.
    selection = fix_types(selection or integration.selection, lambda: ctx.ucd.catalog(integration.account))
    resumable = continuable(selection)
    record = _run_record(ctx, integration, window, selection, known)
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
        except Exception as raw:
            error = classify_failure(raw)
            _record_failure(ctx, record, error, raw, context, kind)
            if error is raw:
                raise
            raise error from raw
        span.set_attribute("export.rows", result.rows)
        span.set_attribute("export.bytes", result.bytes)
    record.rows, record.bytes = result.rows, result.bytes
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
    repo = ProgressRepo(ctx.runs.table, ctx.integrations.secrets)
    return Checkpoints(
        repo,
        integration.account,
        integration.id,
        window.start_unix,
        etag=None if first_attempt else UNREAD,
        notes=_notes(ctx, integration, window),
    )


def _notes(ctx: Context, integration: Integration, window: Window) -> StagedNotes:
    """Where a window's export keeps its block notes (a Parquet file's footer in pieces)."""
    prefix = notes_prefix(integration.account, integration.id, window.start_unix)
    return StagedNotes(ctx.storage.staging_container(), prefix)


def _forget_notes(ctx: Context, integration: Integration, window: Window, selection: Selection | None) -> None:
    """After the advance: a Parquet file's block notes are of no further use (best effort; the lifecycle rule is the fallback)."""
    if keeps_notes(selection or integration.selection):
        _staging(ctx).remove(notes_prefix(integration.account, integration.id, window.start_unix))


def _run_record(
    ctx: Context, integration: Integration, window: Window, selection: Selection, known: FirstRecord | None = None
) -> RunRecord:
    """This attempt's run record, counting the attempts before it (`known`: the previous one, already read)."""
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
    extra = {**context, "error": record.error}
    if not ctx.runs.put_unless_exported(record):
        log.info("another worker delivered this window meanwhile; this attempt's failure is not recorded", extra=extra)
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

    If no window is due after it, the same write frees the integration for the scheduler (its lease),
    as `_hand_on` would right after. None if the integration moved elsewhere meanwhile (a frequency
    change, say): nothing to advance.
    """

    def attempt(current: Integration) -> Integration | None:
        if current.last_success_end and current.last_success_end >= window.end:
            return current  # delivered: by another worker (same name, same bytes), or our own lost answer
        if current.activated_at is None or next_start(current.activated_at, current.last_success_end) != window.start:
            return None
        done = not is_due(
            current.activated_at, window.end, current.frequency_hours, ctx.clock.now(), ctx.settings.settle_seconds
        )
        lease = None if done else current.queued_until
        return ctx.repo.replace(current.with_changes(last_success_end=window.end, last_error=None, queued_until=lease))

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
    notifications.stopped(ctx, stopped, error.message)  # delivery hook (issue 25): only queued, never waited on
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
