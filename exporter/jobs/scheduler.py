"""The scheduler (timer): one job per integration whose next window is due, under a lease.

It reads the due index (exporter/integrations/due.py), not the integrations: a tick's work grows
with what is due, not with the number of integrations. Leases and queue sends go out concurrently;
the entries of the integrations it queued move in batched transactions afterwards.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import telemetry
from ..clock import iso
from ..context import Context
from ..errors import NotFoundError, StaleRecordError
from ..integrations.due import DueEntry, Move, Snapshot, due_at
from ..integrations.model import Integration
from ..windows import backlog, export_lag_seconds
from .messages import ExportJob

# Leases and queue sends at once: each is one storage round trip, so a few threads hide the latency.
# It stays within the storage clients' connection pools (10 connections per host by default).
CONCURRENCY = 8


@dataclass
class ScheduleOutcome:
    """What one scheduler run did: the integrations it queued, those still under a lease, the windows due."""

    now: datetime
    integrations: list[str] = field(default_factory=list)  # queued by this run, in due order
    already_queued: int = 0
    windows_due: int = 0
    repaired: int = 0  # index entries that did not match their integration, put right

    @property
    def queued(self) -> int:
        return len(self.integrations)

    def to_json(self) -> dict[str, Any]:
        counts = {"queued": self.queued, "already_queued": self.already_queued, "windows_due": self.windows_due}
        return {**counts, "integrations": self.integrations, "now": iso(self.now)}


@dataclass
class Decision:
    """What the scheduler did with one due entry."""

    integration_id: str = ""
    queued: bool = False
    already_queued: bool = False
    repaired: bool = False
    windows: int = 0
    lag_seconds: float | None = None
    move: Move | None = None  # the entry's move once the lease is taken


def schedule(ctx: Context) -> ScheduleOutcome:
    """Queue one job per active integration with a due window that is not already queued or running."""
    now = ctx.clock.now()
    outcome = ScheduleOutcome(now)
    index = ctx.repo.due
    entries, broken = index.due_by(now)
    for entity in broken:  # not an entry we could have written: the sweep restores whatever it stood for
        index.remove(entity["RowKey"], entity.metadata.get("etag"))
        outcome.repaired += 1
    until = now + timedelta(seconds=ctx.settings.lease_seconds)
    if entries:
        with ThreadPoolExecutor(min(CONCURRENCY, len(entries)), thread_name_prefix="schedule") as pool:
            decisions = list(pool.map(lambda entry: _decide(ctx, entry, now, until), entries))
    else:
        decisions = []
    index.apply(d.move for d in decisions if d.move is not None)
    for decision in decisions:
        if decision.queued:
            outcome.integrations.append(decision.integration_id)
            outcome.windows_due += decision.windows
        outcome.already_queued += decision.already_queued
        outcome.repaired += decision.repaired
    telemetry.record_tick(
        [d.lag_seconds for d in decisions if d.lag_seconds is not None],
        queued=outcome.queued,
        repaired=outcome.repaired,
    )
    return outcome


def _decide(ctx: Context, entry: DueEntry, now: datetime, until: datetime) -> Decision:
    if entry.state.etag is not None:
        move = ctx.repo.lease(entry, until)
        if move is not None:
            return _queue(ctx, entry.account, entry.integration_id, entry.state, now, move)
    return _decide_from_record(ctx, entry, now, until)


def _decide_from_record(ctx: Context, entry: DueEntry, now: datetime, until: datetime) -> Decision:
    """The slow path: the entry is unconfirmed or the integration changed since it was written."""
    index = ctx.repo.due
    try:
        integration = ctx.repo.get(entry.account, entry.integration_id)
    except NotFoundError:
        index.remove(entry.key, entry.entry_etag)
        return Decision(repaired=True)
    if integration.due_key != entry.key:
        _repair(ctx, integration)
        index.remove(entry.key, entry.entry_etag)
        return Decision(repaired=True)
    due = due_at(integration, ctx.settings.settle_seconds)
    if due is None or due > now:  # settle changed since the entry was written: write it where it belongs
        _repair(ctx, integration, rekey=True)
        return Decision(repaired=True)
    if integration.queued_until is not None and integration.queued_until > now:
        return Decision(already_queued=True)
    try:
        leased = ctx.repo.replace(integration.with_changes(queued_until=until))
    except (StaleRecordError, NotFoundError):
        return Decision()  # changed under us: its writer has moved its entry, the next tick sees it
    return _queue(ctx, leased.account, leased.id, Snapshot.of(leased, leased.etag), now, None)


def _repair(ctx: Context, integration: Integration, rekey: bool = False) -> None:
    """Make sure the integration's own entry exists (or is where its state says it belongs)."""
    if integration.due_key and not rekey:
        ctx.repo.due.put(integration.due_key, Snapshot.of(integration, integration.etag))
        return
    if integration.due_key or due_at(integration, ctx.settings.settle_seconds) is not None:
        try:
            ctx.repo.replace(integration)  # a write moves its entry to where it belongs
        except (StaleRecordError, NotFoundError):
            pass  # written meanwhile: that write moved it


def _queue(
    ctx: Context, account: str, integration_id: str, state: Snapshot, now: datetime, move: Move | None
) -> Decision:
    ctx.storage.queue().send_message(ExportJob(account, integration_id).to_message())
    anchor = state.activated_at
    windows = lag = 0.0
    if anchor is not None:
        windows = backlog(anchor, state.last_success_end, state.frequency_hours, now, ctx.settings.settle_seconds)
        lag = export_lag_seconds(anchor, state.last_success_end, now)
    return Decision(integration_id, queued=True, windows=int(windows), lag_seconds=lag, move=move)
