"""One delivery of an export job (a whole catch-up, or one part of a split window): its time bound, its
outcome, and each way it ends: handed on, continued by a follow-up, stopped, split again, or cut short
by somebody else's change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from ..context import Context
from ..errors import CredentialError, DestinationError, NotFoundError
from ..export.destination import UploadLost
from ..export.plan import Selection
from ..integrations.model import Integration, Status
from ..notifications import outbox
from ..runs import RunRecord, RunStatus
from ..windows import Window, is_due
from . import state
from .failures import STOPS
from .split import SplitPlan
from .stores import forget_notes, forget_split

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from ..ucd.values import Json

# What ends a job without raising: a stop (the integration's state says why), or a split window's shared
# upload gone (planned again by a follow-up). Anything else raises, for the host's redelivery.
ENDS_THE_JOB = (*STOPS, UploadLost)

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

    def to_json(self) -> dict[str, Json]:
        return {
            "exported": self.exported,
            "windows": [w.to_json() for w in self.windows],
            "follow_up": self.follow_up,
            "stopped": self.stopped,
            "reason": self.reason,
        }


def time_bound(ctx: Context) -> Callable[[], bool]:
    """Whether this invocation's time is up (the injected clock: tests move it)."""
    deadline = ctx.clock.now() + timedelta(seconds=ctx.settings.max_seconds_per_run)
    return lambda: ctx.clock.now() >= deadline


def ended_by(
    ctx: Context,
    integration: Integration,
    window: Window,
    plan: SplitPlan | None,
    error: CredentialError | DestinationError | UploadLost,
    exported: Sequence[RunRecord] = (),
) -> JobOutcome:
    """The end of a job whose window raised one of `ENDS_THE_JOB`."""
    if isinstance(error, UploadLost):  # aborted, or expired after a week: the window is planned again
        log.warning("the upload of a split window is gone; it is split again", extra={"account": integration.account})
        forget_split(ctx, integration, window, plan)
        return continued(ctx, integration, exported, "the split window starts again")
    state.stop(ctx, integration, error)
    return JobOutcome(tuple(exported), stopped=error.code, reason=error.message)


class FollowUpLease:
    """The lease a follow-up of a window needs: taken once the window's time ran out, while its last blocks
    land (`take`, by the attempt: neither waits on the other), else as the follow-up is sent (`taken`)."""

    def __init__(self, ctx: Context, integration: Integration):
        self._ctx, self._integration = ctx, integration
        self._taken: list[Integration | None] = []

    def take(self) -> None:
        self._taken.append(state.lease(self._ctx, self._integration))

    def taken(self) -> Integration | None:
        return self._taken[0] if self._taken else state.lease(self._ctx, self._integration)


def continued(
    ctx: Context,
    integration: Integration,
    exported: Sequence[RunRecord],
    reason: str | None = None,
    lease: FollowUpLease | None = None,
) -> JobOutcome:
    """A follow-up message continues where this delivery ends (`lease`: taken already, or taken now)."""
    state.follow_up(ctx, integration, lease.taken if lease is not None else None)
    return JobOutcome(tuple(exported), follow_up=True, reason=reason)


def after_window(
    ctx: Context,
    integration: Integration,
    window: Window,
    plan: SplitPlan | None,
    selection: Selection | None,
    record: RunRecord,
    exported: list[RunRecord],
    continues: str,
    lease: FollowUpLease | None = None,
) -> Integration | JobOutcome:
    """After a window's attempt answered its run record: the integration advanced past the window (the
    record added to `exported`, what the window left in our storage forgotten), or how the job ends: a
    follow-up continues the window (`continues` says why; `lease`: its lease, maybe taken already), or
    somebody else changed the integration."""
    if record.status == RunStatus.EXPORTING:  # the time ran out inside the window
        return continued(ctx, integration, exported, continues, lease)
    exported.append(record)
    # The window's delivery is told from the outbox row the advance writes: a split window's after its file's
    # SHA-256 is read back (exporter/notifications/digest.py); the export never waits on either.
    tell = lambda advanced: outbox.delivered(advanced, record, ctx.clock.now())  # noqa: E731
    advanced = state.advance(ctx, integration, window, tell)  # through the module: a test dies or races right here
    if advanced is None or advanced.status != Status.ACTIVE:
        return changed_concurrently(ctx, integration, exported)
    forget_split(ctx, integration, window, plan)
    forget_notes(ctx, integration, window, selection)
    return advanced


def changed_concurrently(ctx: Context, integration: Integration, exported: Sequence[RunRecord]) -> JobOutcome:
    """Paused, stopped or moved by someone else meanwhile: free it for the scheduler at once."""
    try:
        state.release(ctx, ctx.repo.get(integration.account, integration.id))
    except NotFoundError:
        pass
    return JobOutcome(tuple(exported), reason="integration changed concurrently")


def hand_on(ctx: Context, integration: Integration, exported: Sequence[RunRecord]) -> JobOutcome:
    """After the last window of a job: a follow-up continues a catch-up, else the integration is free again."""
    if integration.activated_at is not None and is_due(
        integration.activated_at,
        integration.last_success_end,
        integration.frequency_hours,
        ctx.clock.now(),
        ctx.settings.settle_seconds,
    ):
        return continued(ctx, integration, exported)
    state.release(ctx, integration)
    return JobOutcome(tuple(exported))
