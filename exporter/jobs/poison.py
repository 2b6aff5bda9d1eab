"""The poison queue: a job that kept failing is made visible in the run history, and its integration freed."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from .. import telemetry
from ..clock import iso, to_unix
from ..context import Context
from ..errors import NotFoundError
from ..export.naming import window_path
from ..runs import POISONED, RunRecord
from ..windows import Window, next_start
from .messages import ExportJob
from .state import modify


def record_poison(ctx: Context, body: str) -> dict[str, Any]:
    """A job that kept failing: make it visible in the run history and free the integration for the scheduler."""
    try:
        job = ExportJob.from_message(body)
        integration = ctx.repo.get(job.account, job.integration_id)
    except (ValueError, KeyError, TypeError, NotFoundError):
        return {"recorded": False}
    telemetry.record_poison_message(integration.account, integration.id)
    start = next_start(integration.activated_at, integration.last_success_end) if integration.activated_at else None
    if start is not None:
        previous = ctx.runs.get(integration.account, integration.id, to_unix(start))
        if previous is not None:  # the window as it began: its bounds, file and selection stay
            record = dataclasses.replace(previous, status=POISONED)
        else:
            window = Window(start, start + timedelta(hours=integration.frequency_hours))
            record = RunRecord(
                integration.account,
                integration.id,
                window.start_unix,
                window.end_unix,
                window_path(
                    integration.destination.prefix, integration.account, integration.id, window, integration.format
                ),
                status=POISONED,
            )
        record.error = f"gave up after {ctx.settings.max_dequeue_count} deliveries: {_last_failure(previous)}"
        record.updated_at = iso(ctx.clock.now())
        ctx.runs.put(record)
    modify(
        ctx,
        integration,
        queued_until=None,
        last_error="export job moved to the poison queue; it is retried on the next schedule",
    )
    return {"recorded": True, "integration_id": integration.id}


def _last_failure(previous: RunRecord | None) -> str:
    """What the window's last attempt recorded; a job can also fail outside a window's export (say, advancing)."""
    if previous is not None and previous.error:
        return previous.error
    return "no window export failed; the job failed around it (see the logs)"
