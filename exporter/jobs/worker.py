"""The worker (queue trigger): export an integration's due windows, oldest first, exactly once.

Exactly once rests on three facts: a window's file name and bytes are a pure function of stored
data, so a repeated export rewrites the same file; the file is committed before the run record and
before `last_success_end` moves; and `last_success_end` only moves through an ETag-conditional write
from the window's start to its end, so two workers cannot both advance it or skip a window
(docs/invariants.md).

The job loop is here; one window's attempt is exporter/jobs/attempt.py, a split window's parts
exporter/jobs/parts.py, what a failure means exporter/jobs/failures.py, the integration's state
changes exporter/jobs/state.py, and how a delivery ends exporter/jobs/delivery.py.
"""

from __future__ import annotations

import functools
import logging

from ..clock import from_unix, to_unix
from ..context import Context
from ..errors import NotFoundError
from ..integrations.model import Integration, Status
from ..runs import RunRecord
from ..windows import due_windows, next_start
from . import ahead, state
from .attempt import FirstRecord, export_whole, selection_of
from .delivery import ENDS_THE_JOB, FollowUpLease, JobOutcome, after_window, ended_by, hand_on, time_bound
from .messages import FOLLOW_UP, ExportJob, FanOut
from .parts import as_split, commit_split, plan_split, process_part, queue_parts
from .scheduler import spread
from .split import SplitPlan

log = logging.getLogger(__name__)


def process_job(ctx: Context, body: str, dequeue_count: int = 1) -> JobOutcome:
    """Export the integration's due windows, oldest first, within this invocation's bound.

    Raises to have the message delivered again (the host's retry, then the poison queue): a transient
    fault may pass, and a bug or a configuration error is retried too, but recorded as what it is.
    """
    fan_out = FanOut.from_message(body)
    if fan_out is not None:
        return JobOutcome(reason=f"sent {spread(ctx, fan_out)} jobs on")
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
        return process_part(ctx, integration, job.window_start, job.part, dequeue_count)
    if integration.status != Status.ACTIVE or integration.activated_at is None:
        state.release(ctx, integration)
        return JobOutcome(reason=f"integration is {integration.status}")

    activated = integration.activated_at  # never moves once set
    out_of_time = time_bound(ctx)
    destination = functools.cache(functools.partial(ctx.destination_for, integration))  # opened at the first window
    # The first window's listing and split plan (a follow-up's progress too), while its record is read.
    read = ahead.read_ahead(ctx, integration, follow_up=job.reason == FOLLOW_UP)
    exported: list[RunRecord] = []
    first = _first_record(ctx, integration, read)
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
        selection = selection_of(begun) if begun and begun.window_start == window.start_unix else integration.selection
        segments = ahead.listing(ctx, integration.account, window, read)
        plan: SplitPlan | None = None
        lease = FollowUpLease(ctx, integration)  # taken while the window's last blocks land, if its time runs out
        try:
            plan = plan_split(
                ctx, integration, window, selection, destination, segments, ahead.recorded_plan(read, window)
            )
            if plan is not None:
                committed = commit_split(ctx, integration, window, plan, as_split(destination()), out_of_time)
                if committed is None:  # parts still to export: their jobs finish the window
                    queue_parts(ctx, integration, window, plan)
                    return JobOutcome(tuple(exported), reason=f"the window is exported in {plan.parts} parts")
                record = committed
            else:
                known = first if window.start_unix == first.window_start else None
                record = export_whole(
                    ctx,
                    integration,
                    window,
                    selection,
                    destination,
                    dequeue_count,
                    out_of_time,
                    segments,
                    known,
                    time_up=lease.take,
                )
        except ENDS_THE_JOB as error:
            return ended_by(ctx, integration, window, plan, error, exported)
        went_on = after_window(
            ctx, integration, window, plan, selection, record, exported, "the window continues in a follow-up", lease
        )
        if isinstance(went_on, JobOutcome):
            return went_on
        integration = went_on
    return hand_on(ctx, integration, exported)


def _first_record(ctx: Context, integration: Integration, read: ahead.ReadAhead) -> FirstRecord:
    if integration.activated_at is None:
        return FirstRecord(None, None)
    start = to_unix(next_start(integration.activated_at, integration.last_success_end))
    record = ctx.runs.get(integration.account, integration.id, start)
    return FirstRecord(start, record, ahead.recorded_progress(read, start))


def _begun(first: FirstRecord) -> RunRecord | None:
    """The run record of a window whose export began at the next start, if any.

    Its file may be committed even though `last_success_end` never moved (a worker died between the
    two), so that window keeps the bounds and the selection it began with: exporting it again gives
    the same name and bytes, where the current frequency or selection could overlap the committed file.
    """
    record = first.record
    return record if record is not None and record.attempts > 0 and record.window_end > record.window_start else None
