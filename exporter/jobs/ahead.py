"""What a job reads ahead: once the integration is read and a window is due, the first window's segment
listing and its split plan (if one was made) are read in the background while the job reads the window's
run record (docs/benchmarks.md, "start cost": each is a round trip that used to wait for the one before);
a follow-up (a window whose time ran out continues) also reads the window's progress record, from which
its export continues.

The destination client is not built ahead: its construction is CPU (imports on a process's first job, a
GCS key's RSA parse), and a thread holding the GIL for tens of milliseconds delays every round trip of
the others by more than it saves (measured: a process's first GCS job took 25-50 ms longer).

Nothing here writes: each is a read the job would make a moment later anyway, so it
answers as if it had been made then by a job running a little faster. A read ahead is used only for the
window it was made for; any other window is read when its turn comes, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..context import Context
from ..export.progress import WindowProgress
from ..integrations.model import Integration
from ..ucd.segments import SegmentRef
from ..windows import Window, due_windows
from . import stores
from .split import SplitPlan

# Threads start on demand; host.json lets an instance run up to six jobs at once (batchSize +
# newBatchThreshold), each reading two things ahead.
_AHEAD = ThreadPoolExecutor(12, thread_name_prefix="ahead")


@dataclass(frozen=True)
class ReadAhead:
    """The first due window's listing and split plan being read (None: nothing was due), and its progress
    record (a follow-up's; None: not read ahead)."""

    window: Window | None = None
    listing: Future[list[SegmentRef]] | None = None
    plan: Future[SplitPlan | None] | None = None
    progress: Future[tuple[WindowProgress, str] | None] | None = None


def read_ahead(ctx: Context, integration: Integration, follow_up: bool = False) -> ReadAhead:
    """Start reading what the job's first window needs, if a window is due (an active integration's).

    The first window is the one after `last_success_end`; a window whose export began with other bounds
    (its run record says so, read meanwhile) is another window, and is listed when its turn comes.
    `follow_up`: the job continues a window whose time ran out, so its progress record is read too (any
    other job's first window has none, mostly: it is read when the export asks, as before).
    """
    if integration.activated_at is None:
        return ReadAhead()
    first = next(
        due_windows(
            integration.activated_at,
            integration.last_success_end,
            integration.frequency_hours,
            ctx.clock.now(),
            ctx.settings.settle_seconds,
            1,
        ),
        None,
    )
    if first is None:
        return ReadAhead()  # nothing due: the job lists nothing
    account, iid = integration.account, integration.id
    return ReadAhead(
        first,
        _AHEAD.submit(ctx.ucd.segments, account, first.start, first.end),
        _AHEAD.submit(stores.splits(ctx).get, account, iid, first.start_unix),
        _AHEAD.submit(stores.progress(ctx).read, account, iid, first.start_unix) if follow_up else None,
    )


def listing(ctx: Context, account: str, window: Window, ahead: ReadAhead) -> Callable[[], list[SegmentRef]]:
    """The window's segments: the listing read ahead for it, else listed in the background from now on
    (while the window's records are read). A due window's segments never change, so one listing serves
    the split decision and the read."""
    if ahead.listing is not None and ahead.window == window:
        return ahead.listing.result
    return _AHEAD.submit(ctx.ucd.segments, account, window.start, window.end).result


def recorded_plan(ahead: ReadAhead, window: Window) -> Callable[[], SplitPlan | None] | None:
    """The window's split plan as read ahead (None: not read ahead for this window; read it when asked)."""
    return ahead.plan.result if ahead.plan is not None and ahead.window == window else None


def recorded_progress(ahead: ReadAhead, window_start: int) -> Callable[[], tuple[WindowProgress, str] | None] | None:
    """The progress record of the window starting at `window_start` as read ahead, with its ETag (None: not
    read ahead for that window; the export reads it when it asks)."""
    if ahead.progress is None or ahead.window is None or ahead.window.start_unix != window_start:
        return None
    return ahead.progress.result
