"""The scheduler (timer): one job per active integration with a due window, under a lease."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .. import telemetry
from ..clock import iso
from ..context import Context
from ..errors import ConflictError, NotFoundError
from ..integrations.model import Integration, Status
from ..windows import backlog, export_lag_seconds, is_due
from .messages import ExportJob


def schedule(ctx: Context) -> dict[str, Any]:
    """Queue one job per active integration with a due window that is not already queued or running."""
    now = ctx.clock.now()
    queued, busy, windows_due = [], 0, 0
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
            busy += 1
            continue
        lease = now + timedelta(seconds=ctx.settings.lease_seconds)
        if not _take_lease(ctx, integration, lease):
            continue  # changed under us: the next minute sees it again
        queue.send_message(ExportJob(integration.account, integration.id).to_message())
        queued.append(integration.id)
        windows_due += backlog(
            anchor, integration.last_success_end, integration.frequency_hours, now, ctx.settings.settle_seconds
        )
    return {
        "queued": len(queued),
        "already_queued": busy,
        "windows_due": windows_due,
        "integrations": queued,
        "now": iso(now),
    }


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
