"""The scheduler (timer): one job per integration whose next window is due, under a lease.

It reads the due index (exporter/integrations/due.py), never the integrations table: one range query
for the entries at or before now, their leases taken 100 to a transaction on the entries themselves,
and the queue messages sent concurrently. A tick's work grows with what is due, not with the number
of integrations (docs/fleet.md).

The lease is the entry's `leased_until`: the worker's first write of the integration moves the entry
(and so ends the lease); an entry whose lease ran out without that is checked against its
integration before it is queued again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from .. import telemetry
from ..clock import iso
from ..context import Context
from ..errors import NotFoundError, StaleRecordError
from ..integrations.due import DueEntry, Snapshot, due_at
from ..integrations.model import Integration
from ..windows import backlog, export_lag_seconds
from .messages import ExportJob, FanOut

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from ..ucd.values import Json

# Reads and queue sends at once: each is one storage round trip, so a few threads hide the latency.
# It stays within the storage clients' connection pools (exporter/storage.py).
CONCURRENCY = 8
# From this many due in one tick, jobs go out FAN_OUT_SIZE to a message, and the workers send them on
# one by one (`spread`): the timer's sends grow with what is due divided by FAN_OUT_SIZE.
FAN_OUT_AT = 100
FAN_OUT_SIZE = 32

T = TypeVar("T")
R = TypeVar("R")


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

    def to_json(self) -> dict[str, Json]:
        counts = {"queued": self.queued, "already_queued": self.already_queued, "windows_due": self.windows_due}
        return {**counts, "integrations": list(self.integrations), "now": iso(self.now)}


def schedule(ctx: Context) -> ScheduleOutcome:
    """Queue one job per active integration with a due window that is not already queued or running."""
    now = ctx.clock.now()
    outcome = ScheduleOutcome(now)
    index = ctx.repo.due
    entries, broken = index.due_by(now)
    for entity in broken:  # not an entry we could have written: the sweep restores whatever it stood for
        index.remove(entity["RowKey"], entity.metadata.get("etag"))
        outcome.repaired += 1
    trusted: list[DueEntry] = []
    to_check: list[DueEntry] = []
    for entry in entries:
        if entry.leased_until is not None and entry.leased_until > now:
            outcome.already_queued += 1
        elif entry.state.etag is None or entry.leased_until is not None:
            to_check.append(entry)  # unconfirmed, or its lease ran out with no write: ask the integration
        else:
            trusted.append(entry)
    checked = _concurrently(lambda entry: _check(ctx, entry, now), to_check)
    outcome.repaired += sum(1 for entry in checked if entry is None)
    due = sorted(trusted + [entry for entry in checked if entry is not None], key=lambda entry: entry.key)
    leased = index.lease(due, now + timedelta(seconds=ctx.settings.lease_seconds), each=_concurrently)
    queue = ctx.storage.queue()
    jobs = [ExportJob(entry.account, entry.integration_id) for entry in leased]
    if len(jobs) >= FAN_OUT_AT:
        messages = [FanOut(tuple(jobs[i : i + FAN_OUT_SIZE])).to_message() for i in range(0, len(jobs), FAN_OUT_SIZE)]
    else:
        messages = [job.to_message() for job in jobs]
    _concurrently(queue.send_message, messages)
    lags = []
    for entry in leased:
        outcome.integrations.append(entry.integration_id)
        state = entry.state
        if state.activated_at is not None:
            settle = ctx.settings.settle_seconds
            outcome.windows_due += backlog(
                state.activated_at, state.last_success_end, state.frequency_hours, now, settle
            )
            lags.append(export_lag_seconds(state.activated_at, state.last_success_end, now))
    telemetry.record_tick(lags, queued=outcome.queued, repaired=outcome.repaired)
    return outcome


def spread(ctx: Context, fan_out: FanOut) -> int:
    """A worker's part of a big tick: each job of the fan-out sent as its own message, behind what is queued.

    Delivered twice, it sends them twice: a job for an integration that is up to date does nothing.
    """
    queue = ctx.storage.queue()
    _concurrently(queue.send_message, [job.to_message() for job in fan_out.jobs])
    return len(fan_out.jobs)


def _concurrently(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    items = list(items)
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(min(CONCURRENCY, len(items)), thread_name_prefix="schedule") as pool:
        return list(pool.map(work, items))


def _check(ctx: Context, entry: DueEntry, now: datetime) -> DueEntry | None:
    """The entry with its integration's state, if it is that integration's current entry and due; else
    the index is put right and None comes back."""
    index = ctx.repo.due
    try:
        integration = ctx.repo.get(entry.account, entry.integration_id)
    except NotFoundError:
        index.remove(entry.key, entry.entry_etag)
        return None
    if integration.due_key != entry.key:  # a write moved on and its entry move was lost
        _repair(ctx, integration)
        index.remove(entry.key, entry.entry_etag)
        return None
    due = due_at(integration, ctx.settings.settle_seconds)
    if due is None or due > now:  # settle changed since the entry was written: write it where it belongs
        _repair(ctx, integration, rekey=True)
        return None
    return replace(entry, state=Snapshot.of(integration, integration.etag))


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
