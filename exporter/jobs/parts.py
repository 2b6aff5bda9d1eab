"""A split window's jobs: planning the window into parts, queuing a job per part, exporting one part,
and the one commit of the file once every part is staged (the plan itself: exporter/jobs/split.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import cast

from azure.core.exceptions import AzureError

from .. import telemetry
from ..clock import from_unix, iso
from ..context import Context
from ..errors import InternalError
from ..export.destination import Destination, SplitDestination, SplitFile, StagedPart, UploadLost
from ..export.naming import window_path
from ..export.plan import Selection
from ..export.progress import Checkpoints, WindowProgress
from ..export.resume import splittable
from ..export.runner import Target, WindowExport, export_window
from ..integrations.model import Integration, Status
from ..runs import RunRecord, RunStatus
from ..ucd.reader import ReadPosition
from ..ucd.segments import SegmentRef
from ..windows import Window
from . import state, stores
from .attempt import recorded_selection, run_record, selection_of
from .delivery import ENDS_THE_JOB, JobOutcome, after_window, ended_by, hand_on, time_bound
from .failures import failure_recorded
from .messages import ExportJob
from .split import RELAY_PART, SplitPlan, plan_parts
from .staging import staged_name

log = logging.getLogger(__name__)


def as_split(destination: Destination) -> SplitDestination:
    """The destination of a split window: one that can take a file in parts (a plan exists only for those)."""
    if not isinstance(destination, SplitDestination):
        raise InternalError(f"a split window's destination ({type(destination).__name__}) cannot take parts")
    return destination


def plan_split(
    ctx: Context,
    integration: Integration,
    window: Window,
    selection: Selection | None,
    destination: Callable[[], Destination],
    segments: Callable[[], list[SegmentRef]],
    recorded: Callable[[], SplitPlan | None] | None = None,
) -> SplitPlan | None:
    """The window's split plan: the one already made, or a new one if the window is large enough; None: whole.

    `recorded`: the plan already made, as the job read it ahead (None: read it here).

    A window already begun whole (its progress recorded) stays whole; so does every window of a
    destination that cannot take parts and every file that cannot be written in parts (`splittable`:
    Parquet, or a manifest).
    """
    account, iid = integration.account, integration.id
    plan = recorded() if recorded is not None else stores.splits(ctx).get(account, iid, window.start_unix)
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
    if stores.progress(ctx).get(account, iid, window.start_unix) is not None:
        return None
    target = destination()  # opened only for a window to split: opening it is part of an export's attempt
    if not isinstance(target, SplitDestination):
        return None
    path = window_path(target.prefix, account, iid, window, selection.format)
    upload = target.begin_split(path)
    if upload is None:
        return None
    # Bounds and selection fixed, a typed file's parameter types too: every part, and a replay, reads them here.
    ctx.runs.put(run_record(ctx, integration, window, selection))
    plan = stores.splits(ctx).create(account, iid, window.start_unix, SplitPlan(path, firsts, upload))
    log.info("window split into parts", extra={"account": account, "integration_id": iid, "parts": plan.parts})
    return plan


def queue_parts(ctx: Context, integration: Integration, window: Window, plan: SplitPlan) -> None:
    """A job per part not yet complete; the integration stays leased while they run."""
    state.lease(ctx, integration)
    queue = ctx.storage.queue()
    for part in range(plan.parts):
        progress = stores.progress(ctx).get(integration.account, integration.id, window.start_unix, part)
        if progress is None or not progress.complete:
            queue.send_message(_part_job(integration, window.start_unix, part).to_message())


def _part_job(integration: Integration, window_start: int, part: int) -> ExportJob:
    return ExportJob(integration.account, integration.id, "part", window_start, part)


def process_part(ctx: Context, integration: Integration, window_start: int, part: int, deliveries: int) -> JobOutcome:
    """Export one part of a split window; the worker that completes the last part commits the file."""
    plan = stores.splits(ctx).get(integration.account, integration.id, window_start)
    record = ctx.runs.get(integration.account, integration.id, window_start)
    if plan is None or record is None or part >= plan.parts:
        return JobOutcome(reason="the split window is already committed")
    if integration.status != Status.ACTIVE:
        return JobOutcome(reason=f"integration is {integration.status}")  # resuming queues the parts again
    window = Window(from_unix(record.window_start), from_unix(record.window_end))
    out_of_time = time_bound(ctx)
    destination = as_split(ctx.destination_for(integration))
    try:
        result = _export_part(ctx, integration, record, window, plan, part, destination, out_of_time, deliveries)
        if not result.complete:
            ctx.storage.queue().send_message(_part_job(integration, window_start, part).to_message())
            return JobOutcome(follow_up=True, reason=f"part {part} continues in a follow-up")
        committed = commit_split(ctx, integration, window, plan, destination, out_of_time)
    except ENDS_THE_JOB as error:
        return ended_by(ctx, integration, window, plan, error)
    if committed is None:
        return JobOutcome(reason=f"part {part} exported")
    relaying = "the relay of the window continues in a follow-up"
    went_on = after_window(ctx, integration, window, plan, selection_of(record), committed, [], relaying)
    return went_on if isinstance(went_on, JobOutcome) else hand_on(ctx, went_on, [committed])


def _export_part(
    ctx: Context,
    integration: Integration,
    record: RunRecord,
    window: Window,
    plan: SplitPlan,
    part: int,
    destination: SplitDestination,
    out_of_time: Callable[[], bool],
    deliveries: int,
) -> WindowExport:
    """Stage one part's blocks where the destination places them; a failure is recorded on the window's run."""
    context = {"account": integration.account, "integration_id": integration.id, "part": part, "delivery": deliveries}
    kind = integration.destination.type
    # A lost upload is no failure of this part: the split starts again (process_part: delivery.ended_by).
    with failure_recorded(ctx, dataclasses.replace(record), context, kind, passing=(UploadLost,)):
        target, sink = _placed(ctx, integration, window, plan, part, destination)
        return export_window(
            ctx.ucd,
            integration.account,
            integration.id,
            recorded_selection(record),  # plan_split wrote it
            window,
            sink,
            checkpoints=Checkpoints(stores.progress(ctx), integration.account, integration.id, window.start_unix, part),
            out_of_time=out_of_time,
            target=target,
        )


def split_file(
    ctx: Context, integration: Integration, window: Window, plan: SplitPlan, out_of_time: Callable[[], bool]
) -> SplitFile:
    """The split file as its destination sees it: where its parts may stage besides, and its join's progress."""
    account, iid, start = integration.account, integration.id, window.start_unix
    return SplitFile(
        plan.path,
        plan.upload,
        stores.staging(ctx),
        lambda part: staged_name(account, iid, start, part),
        Checkpoints(stores.progress(ctx), account, iid, start, RELAY_PART),
        out_of_time,
    )


def _placed(
    ctx: Context, integration: Integration, window: Window, plan: SplitPlan, part: int, destination: SplitDestination
) -> tuple[Target, Destination]:
    """Where part `part` stages its blocks, as the destination places it: in place, or in the service's staging."""
    placement = destination.place_part(split_file(ctx, integration, window, plan, lambda: False), part)
    # The runner only stages, resumes and commits blocks: the staging area is a destination of blocks.
    sink = destination if placement.staging is None else cast(Destination, placement.staging)
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
    return target, sink


def commit_split(
    ctx: Context,
    integration: Integration,
    window: Window,
    plan: SplitPlan,
    destination: SplitDestination,
    out_of_time: Callable[[], bool],
) -> RunRecord | None:
    """Once every part is staged, one worker (the one whose ETag claim wins) commits the file; None otherwise.

    A relayed file whose time runs out answers its run record still `exporting`: a follow-up continues it.
    """
    account, iid = integration.account, integration.id
    splits = stores.splits(ctx)
    parts = [stores.progress(ctx).get(account, iid, window.start_unix, p) for p in range(plan.parts)]
    done = [p for p in parts if p is not None and p.complete]
    if len(done) < plan.parts:
        return None
    claim = splits.claim_commit(account, iid, window.start_unix, ctx.clock.now(), ctx.settings.lease_seconds)
    if claim is None:
        return None
    context = {"account": account, "integration_id": iid, "window_start": window.start_unix, "commit": plan.parts}
    try:
        # A failure is recorded on the window's run, as a part's is; a lost upload passes: the split starts again.
        kind = integration.destination.type
        with failure_recorded(ctx, _window_record(ctx, account, iid, window), context, kind, passing=(UploadLost,)):
            joined = _join_parts(ctx, integration, window, plan, done, destination, out_of_time)
    except Exception:
        splits.release_commit(account, iid, window.start_unix, claim)  # the redelivery claims at once
        raise
    record = _window_record(ctx, account, iid, window)
    record.error = ""
    record.updated_at = iso(ctx.clock.now())
    if not joined:
        splits.release_commit(account, iid, window.start_unix, claim)  # the follow-up claims at once
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
    destination: SplitDestination,
    out_of_time: Callable[[], bool],
) -> bool:
    """Make the staged parts the file, in order, as the destination joins them; False: its time ran out (GCS's relay)."""
    split = split_file(ctx, integration, window, plan, out_of_time)
    return destination.commit_parts(split, [StagedPart(p.blocks, p.bytes) for p in done])


def _window_record(ctx: Context, account: str, integration_id: str, window: Window) -> RunRecord:
    """The split window's run record, written when the window was planned."""
    record = ctx.runs.get(account, integration_id, window.start_unix)
    if record is None:
        raise InternalError("a split window lost its run record")
    return record
