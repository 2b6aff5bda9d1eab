"""The sweep (hourly timer): the due index checked against every integration, and put right.

The scheduler repairs any entry it reads; the sweep finds what no entry leads to: an integration
whose entry is missing (a lost write, a storage account restored from a copy, integrations stored
before the index existed) and entries nothing reads soon. It reads the entries before the
integrations, so an integration's state is never older than the entries it is compared with: an
entry it deletes is one its integration has moved past for good (keys are never reused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import telemetry
from ..clock import iso
from ..context import Context
from ..errors import NotFoundError, StaleRecordError
from ..integrations.due import DueEntry, Snapshot, due_at
from ..integrations.model import Status
from ..windows import export_lag_seconds

log = logging.getLogger(__name__)
LATE_WINDOWS = 2  # an integration more than this many windows behind is named in the log (the lag alert)


@dataclass
class SweepOutcome:
    now: datetime
    integrations: int = 0
    entries: int = 0
    missing: int = 0  # integrations due with no entry: entry written
    stale: int = 0  # entries of no current integration state: deleted
    rekeyed: int = 0  # integrations whose entry belongs elsewhere (settle changed, stored before the index)
    late: int = 0  # integrations more than LATE_WINDOWS windows behind, each logged by account and id

    @property
    def repaired(self) -> int:
        return self.missing + self.stale + self.rekeyed

    def to_json(self) -> dict[str, Any]:
        return {
            "now": iso(self.now),
            "integrations": self.integrations,
            "entries": self.entries,
            "missing": self.missing,
            "stale": self.stale,
            "rekeyed": self.rekeyed,
            "late": self.late,
        }


def sweep(ctx: Context) -> SweepOutcome:
    now = ctx.clock.now()
    outcome = SweepOutcome(now)
    index = ctx.repo.due
    entries = list(index.all())  # first: see the module's docstring
    outcome.entries = len(entries)
    present = {e.key for e in entries if isinstance(e, DueEntry)}
    current: set[str] = set()
    lags: list[float] = []
    for integration in ctx.repo.all():
        outcome.integrations += 1
        if integration.status != Status.PAUSED and integration.activated_at is not None:
            lag = export_lag_seconds(integration.activated_at, integration.last_success_end, now)
            lags.append(lag)
            late = (LATE_WINDOWS + 1) * integration.frequency_hours * 3600 + ctx.settings.settle_seconds
            if lag > late:
                outcome.late += 1
                log.warning(
                    "integration is late: account %s, integration %s, %d s behind, status %s",
                    integration.account,
                    integration.id,
                    lag,
                    integration.status.value,
                )
        due = due_at(integration, ctx.settings.settle_seconds)
        if due is None and not integration.due_key:
            continue
        if due is not None and integration.due_key == index.key_for(integration, integration.revision):
            current.add(integration.due_key)
            if integration.due_key not in present:
                index.put(integration.due_key, Snapshot.of(integration, integration.etag))
                outcome.missing += 1
            continue
        try:  # its entry is not where its state says: a write puts it there
            ctx.repo.replace(integration)
            outcome.rekeyed += 1
        except (StaleRecordError, NotFoundError):
            pass  # written meanwhile: that write moved its entry
    for entry in entries:
        if isinstance(entry, DueEntry):
            if entry.key not in current:
                index.remove(entry.key, entry.entry_etag)
                outcome.stale += 1
        else:
            index.remove(entry["RowKey"], entry.metadata.get("etag"))
            outcome.stale += 1
    telemetry.record_sweep(lags, outcome.repaired)
    return outcome
