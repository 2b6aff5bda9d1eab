"""A window whose export began keeps the bounds and selection it began with.

Found by the chaos soak (`python -m bench.soak --days 2 --seed 1`): a worker committed the file of
[A, A+1h) and died before `last_success_end` moved; the customer then changed the frequency to 2 h,
and the next export wrote [A, A+2h) beside the committed file, so every row of the first hour was
delivered twice. A selection change in the same gap rewrote the committed file with other columns.
The worker keeps the begun window, whatever the destination: Azure only (`azure_kit`).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import timedelta

import pytest

from exporter.export import runner
from exporter.jobs import attempt, schedule
from exporter.local.host import drain
from exporter.runs import RunStatus
from exporter.windows import due_windows
from tests.destination_helpers import create
from tests.export_helpers import ACCOUNT, ACT, SETTLE, H, deliver_one, exported_files, populate, read_ids
from tests.helpers import call


class WorkerKilled(BaseException):
    """The worker process dies here: nothing in the app catches it."""


def die_after_the_first_commit(monkeypatch) -> list[str]:
    """The first export commits its file, then the worker dies before anything is recorded."""
    died: list[str] = []

    def export_then_die(*args, **kwargs):
        result = runner.export_window(*args, **kwargs)
        if not died:
            died.append(result.path)
            raise WorkerKilled(result.path)
        return result

    monkeypatch.setattr(attempt, "export_window", export_then_die)
    return died


def first_window_dies(ctx, clock, monkeypatch) -> list[str]:
    clock.set(ACT + H + SETTLE)
    assert schedule(ctx).queued == 1
    died = die_after_the_first_commit(monkeypatch)
    with pytest.raises(WorkerKilled):
        deliver_one(ctx)
    assert len(died) == 1
    return died


def rows_of(kit, name: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(kit.read(name).decode(), newline="")))


def test_a_frequency_change_after_an_unrecorded_commit_delivers_no_row_twice(ctx, clock, azure_kit, monkeypatch):
    iid = create(ctx, clock, azure_kit)
    populate(ctx, clock, range(4))
    first_window_dies(ctx, clock, monkeypatch)
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None, "the commit was never recorded"

    assert call(ctx, "integrations_update", {"frequency_hours": 2}, account=ACCOUNT, id=iid).status == 200
    clock.set(ACT + 5 * H + SETTLE)
    drain(ctx, retry_delay=0)  # the redelivery of the dead job
    schedule(ctx)
    drain(ctx)

    integration = ctx.repo.get(ACCOUNT, iid)
    files = exported_files(ctx, azure_kit, integration)
    bounds = [(start, end) for start, end, _name in files]
    start = int(ACT.timestamp())
    assert bounds == [(start, start + 3600), (start + 3600, start + 3 * 3600), (start + 3 * 3600, start + 5 * 3600)], (
        "the begun window keeps 1 h; the frequency change applies after it"
    )
    exported = Counter(row[0] for _s, _e, name in files for row in rows_of(azure_kit, name)[1:])
    assert exported and set(exported.values()) == {1}, "a row was delivered twice"
    names = [e.name for e in integration.events]
    assert set(exported) == set(read_ids(ctx, ACT, integration.last_success_end, names))


def test_a_selection_change_after_an_unrecorded_commit_keeps_the_committed_bytes(ctx, clock, azure_kit, monkeypatch):
    iid = create(ctx, clock, azure_kit)
    populate(ctx, clock, range(2))
    [path] = first_window_dies(ctx, clock, monkeypatch)
    committed = azure_kit.read(path)

    changed = call(
        ctx,
        "integrations_update",
        {"attributes": [], "events": [{"name": "purchase", "params": []}]},
        account=ACCOUNT,
        id=iid,
    )
    assert changed.status == 200, changed.body
    drain(ctx, retry_delay=0)

    assert azure_kit.read(path) == committed, "the begun window is exported as it began"
    assert ctx.runs.get(ACCOUNT, iid, int(ACT.timestamp())).status == RunStatus.EXPORTED


def test_the_begun_window_keeps_its_length_and_the_next_ones_take_the_frequency():
    windows = list(due_windows(ACT, None, 2, ACT + 7 * H, 120, begun_end=ACT + H))
    assert [(w.start - ACT, w.end - ACT) for w in windows] == [(timedelta(0), H), (H, 3 * H), (3 * H, 5 * H)]
    assert list(due_windows(ACT, None, 2, ACT + H + timedelta(seconds=119), 120, begun_end=ACT + H)) == []
