"""A follow-up invocation's fixed cost (docs/benchmarks.md, "a follow-up's fixed cost"): what it overlaps,
and the write order that makes resume exactly-once kept while it does.

- The attempt's run record is written while the export reads where its file stands; the export's first
  write of any kind (a block, a Parquet block's note) waits for it, and a record that does not land fails
  the attempt with nothing written.
- Once the time ran out, the record of where the window stands and the follow-up's lease are written
  while the last block lands (the follow-up message still after all of them).
- A follow-up reads its window's progress record beside the run record, once.
- The window's read begins where the file continues before the file is opened there (`EarlyRead`).
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from azure.core.exceptions import ServiceRequestError

from exporter.clock import to_unix
from exporter.export import progress as progress_module
from exporter.export.reading import EarlyRead, begun_at
from exporter.jobs import attempt, state
from exporter.runs import RunStatus
from tests import resume_helpers as resume
from tests.export_helpers import ACCOUNT, ACT, deliver_one
from tests.test_export_parquet_resume import a_large_parquet_window

WAIT = 30  # seconds: only a broken order waits this long (and then the test fails)


def _records(ctx, monkeypatch, before=lambda record: None) -> list[tuple[str, int, int]]:
    """Every run-record write that landed: (status, attempts, rows); `before(record)` runs before each write."""
    landed: list[tuple[str, int, int]] = []
    put = ctx.runs.put

    def noted(record):
        before(record)
        put(record)
        landed.append((str(record.status), record.attempts, record.rows))

    monkeypatch.setattr(ctx.runs, "put", noted)
    return landed


def test_no_block_or_note_is_written_before_the_attempts_run_record_lands(ctx, clock, azure_kit, monkeypatch):
    iid = a_large_parquet_window(ctx, clock, azure_kit, monkeypatch)
    # The first follow-up's record is held back until its export asks to write (it then waits for the
    # record) or writes without asking: a write then passes the record, and the test fails.
    asked = threading.Event()
    early: list[str] = []
    start_record = (str(RunStatus.EXPORTING), 2, 0)

    def held_back(record):
        if (str(record.status), record.attempts, record.rows) == start_record:
            asked.wait(WAIT)

    landed = _records(ctx, monkeypatch, held_back)
    real_landed = attempt._landed

    def asking(record):
        asked.set()
        return real_landed(record)

    monkeypatch.setattr(attempt, "_landed", asking)
    real_stage, real_note = resume.Staging.stage_block, progress_module.StagedNotes.put

    def stage_block(self, path, index, data):
        if start_record not in landed and index > 0:
            early.append(f"block {index}")
            asked.set()
        return real_stage(self, path, index, data)

    def note(self, block, data):
        if start_record not in landed and block > 0:
            early.append(f"note {block}")
            asked.set()
        return real_note(self, block, data)

    monkeypatch.setattr(resume.Staging, "stage_block", stage_block)
    monkeypatch.setattr(progress_module.StagedNotes, "put", note)
    seen, results = resume.a_block_an_invocation(ctx, clock, monkeypatch)

    assert len(results) >= 3 and results[-1].exported == 1
    assert start_record in landed
    assert early == [], "a write of the follow-up before its run record"
    assert set(seen.values()) == {1}
    assert ctx.runs.get(ACCOUNT, iid, to_unix(ACT)).status == RunStatus.EXPORTED


def test_an_attempt_whose_run_record_does_not_land_writes_nothing_and_records_no_failure(
    ctx, clock, azure_kit, monkeypatch
):
    iid = a_large_parquet_window(ctx, clock, azure_kit, monkeypatch)
    seen: Counter = Counter()
    resume.staging(ctx, monkeypatch, seen)
    notes: list[int] = []
    monkeypatch.setattr(progress_module.StagedNotes, "put", lambda self, block, data: notes.append(block))

    def unreachable(record):
        raise ServiceRequestError("the table service is unreachable")

    monkeypatch.setattr(ctx.runs, "put", unreachable)
    with pytest.raises(ServiceRequestError):
        deliver_one(ctx)

    assert (seen, notes) == (Counter(), []), "nothing written without the record"
    assert ctx.runs.get(ACCOUNT, iid, to_unix(ACT)) is None, "no failure recorded on a record never written"
    progress = progress_module.ProgressRepo(ctx.runs.table, ctx.integrations.secrets)
    assert progress.get(ACCOUNT, iid, to_unix(ACT)) is None


def test_a_window_whose_time_runs_out_writes_its_record_and_lease_while_its_last_block_lands(
    ctx, clock, azure_kit, monkeypatch
):
    iid = a_large_parquet_window(ctx, clock, azure_kit, monkeypatch)
    recorded, leased = threading.Event(), threading.Event()
    landing: list[tuple[bool, bool]] = []
    put = ctx.runs.put

    def noted(record):
        put(record)
        if record.status == RunStatus.EXPORTING and record.rows > 0:
            recorded.set()

    monkeypatch.setattr(ctx.runs, "put", noted)
    lease = state.lease

    def noted_lease(ctx_, integration):
        taken = lease(ctx_, integration)
        leased.set()
        return taken

    monkeypatch.setattr(state, "lease", noted_lease)
    real_stage = resume.Staging.stage_block

    def stage_block(self, path, index, data):
        if index == 0:  # the first invocation's only block, handed on once its time ran out
            landing.append((recorded.wait(WAIT), leased.wait(WAIT)))
        return real_stage(self, path, index, data)

    monkeypatch.setattr(resume.Staging, "stage_block", stage_block)
    seen, results = resume.a_block_an_invocation(ctx, clock, monkeypatch)

    assert landing == [(True, True)], "the record and the lease were written while block 0 landed"
    assert results[0].follow_up and results[-1].exported == 1
    assert set(seen.values()) == {1}
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is not None


def test_a_follow_up_reads_its_progress_once_beside_its_run_record(ctx, clock, azure_kit, monkeypatch):
    a_large_parquet_window(ctx, clock, azure_kit, monkeypatch)
    reads: list[str] = []
    read = progress_module.ProgressRepo.read

    def noted(self, *args, **kwargs):
        reads.append(threading.current_thread().name)
        return read(self, *args, **kwargs)

    monkeypatch.setattr(progress_module.ProgressRepo, "read", noted)
    _, results = resume.a_block_an_invocation(ctx, clock, monkeypatch)

    follow_ups = len(results) - 1  # the first attempt knows there is no progress yet
    assert follow_ups >= 2
    assert len(reads) == follow_ups, "one read a follow-up"
    assert all(name.startswith("ahead") for name in reads), reads


class _Read:
    """A read's items from a position, noting when its first item is asked for and when it is closed."""

    def __init__(self):
        self.asked, self.closed = threading.Event(), []
        self.begun: list[int] = []

    def __call__(self, at: int):
        self.begun.append(at)
        try:
            self.asked.set()
            yield from range(at, at + 3)
        finally:
            self.closed.append(at)


def test_an_early_read_makes_its_first_item_before_it_is_iterated():
    read = _Read()
    early = EarlyRead(read, 5)
    assert read.asked.wait(WAIT), "begun in the background"
    assert list(begun_at(early, read, 5)) == [5, 6, 7]
    assert read.begun == [5], "the early read is the read"


def test_an_early_read_begun_elsewhere_is_closed_and_the_read_begun_where_the_file_continues():
    read = _Read()
    early = EarlyRead(read, 5)
    items = begun_at(early, read, 0)  # the file starts again from its first block
    assert read.closed == [5], "the early read stopped"
    assert list(items) == [0, 1, 2]
    assert read.begun == [5, 0]
