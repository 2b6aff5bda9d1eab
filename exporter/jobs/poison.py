"""The poison queue: a job that kept failing is made visible in the run history, and its integration freed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .. import telemetry
from ..clock import iso, to_unix
from ..context import Context
from ..errors import NotFoundError
from ..export.naming import window_path
from ..integrations.model import Integration
from ..runs import RunRecord, RunStatus
from ..windows import Window, next_start
from .messages import ExportJob
from .state import modify

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from ..ucd.values import Json


@dataclass(frozen=True)
class PoisonOutcome:
    """What recording a poisoned job did: nothing for a message naming no integration."""

    integration_id: str | None = None

    def to_json(self) -> dict[str, Json]:
        if self.integration_id is None:
            return {"recorded": False}
        return {"recorded": True, "integration_id": self.integration_id}


def record_poison(ctx: Context, body: str) -> PoisonOutcome:
    """A job that kept failing: make it visible in the run history and free the integration for the scheduler."""
    try:
        job = ExportJob.from_message(body)
        integration = ctx.repo.get(job.account, job.integration_id)
    except (ValueError, KeyError, TypeError, NotFoundError):
        return PoisonOutcome()
    telemetry.record_poison_message(integration.account, integration.id)
    start = next_start(integration.activated_at, integration.last_success_end) if integration.activated_at else None
    if start is not None:
        previous = ctx.runs.get(integration.account, integration.id, to_unix(start))
        record = _poisoned_record(integration, start, previous)
        record.error = f"gave up after {ctx.settings.max_dequeue_count} deliveries: {_last_failure(previous)}"
        record.updated_at = iso(ctx.clock.now())
        ctx.runs.put(record)
    modify(
        ctx,
        integration,
        queued_until=None,
        last_error="export job moved to the poison queue; it is retried on the next schedule",
    )
    return PoisonOutcome(integration.id)


def _poisoned_record(integration: Integration, start: datetime, previous: RunRecord | None) -> RunRecord:
    """The record of the window the job was stuck on: as it began if it began (its bounds, file and selection stay)."""
    if previous is not None:
        return dataclasses.replace(previous, status=RunStatus.POISONED)
    window = Window(start, start + timedelta(hours=integration.frequency_hours))
    path = window_path(integration.destination.prefix, integration.account, integration.id, window, integration.format)
    return RunRecord.of_window(integration.account, integration.id, window, path, status=RunStatus.POISONED)


def _last_failure(previous: RunRecord | None) -> str:
    """What the window's last attempt recorded; a job can also fail outside a window's export (say, advancing)."""
    if previous is not None and previous.error:
        return previous.error
    return "no window export failed; the job failed around it (see the logs)"
