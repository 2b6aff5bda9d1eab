"""The scheduler (timer): one job per active integration with a due window, under a lease."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import telemetry
from ..clock import iso
from ..context import Context
from ..errors import ConflictError, NotFoundError
from ..integrations.model import Integration, Status
from ..windows import backlog, export_lag_seconds, is_due
from .messages import ExportJob


@dataclass
class ScheduleOutcome:
    """What one scheduler run did: the integrations it queued, those still under a lease, the windows due."""

    now: datetime
    integrations: list[str] = field(default_factory=list)  # queued by this run, in order
    already_queued: int = 0
    windows_due: int = 0

    @property
    def queued(self) -> int:
        return len(self.integrations)

    def to_json(self) -> dict[str, Any]:
        counts = {"queued": self.queued, "already_queued": self.already_queued, "windows_due": self.windows_due}
        return {**counts, "integrations": self.integrations, "now": iso(self.now)}


def schedule(ctx: Context) -> ScheduleOutcome:
    """Queue one job per active integration with a due window that is not already queued or running."""
    now = ctx.clock.now()
    outcome = ScheduleOutcome(now)
    queue = ctx.storage.queue()
    for integration in ctx.repo.all_unpaused():
        anchor = integration.activated_at
        if anchor is None:
            continue
        telemetry.record_export_lag(
            integration.account, integration.id, export_lag_seconds(anchor, integration.last_success_end, now)
        )
        if integration.status != Status.ACTIVE:
            continue
        if not is_due(
            anchor, integration.last_success_end, integration.frequency_hours, now, ctx.settings.settle_seconds
        ):
            continue
        if integration.queued_until and integration.queued_until > now:
            outcome.already_queued += 1
            continue
        lease = now + timedelta(seconds=ctx.settings.lease_seconds)
        if not _take_lease(ctx, integration, lease):
            continue  # changed under us: the next minute sees it again
        queue.send_message(ExportJob(integration.account, integration.id).to_message())
        outcome.integrations.append(integration.id)
        outcome.windows_due += backlog(
            anchor, integration.last_success_end, integration.frequency_hours, now, ctx.settings.settle_seconds
        )
    return outcome


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
