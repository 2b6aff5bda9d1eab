"""Split windows (docs/architecture.md, "Windows of any size"), once per destination type.

A window above `EXPORT_SPLIT_BYTES` is exported in parts, one queue job each, by several workers at
once, and committed once, in order: the file must be byte-identical to a one-worker export (header
once), in every row format (a gzip file's parts begin at a segment, where a member begins anyway).
Azure Blob and S3 split; GCS (a resumable session is sequential) exports the window whole.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter

import pytest

from exporter.clock import to_unix
from exporter.context import Context
from exporter.destinations import open_destination as real_open_destination
from exporter.errors import TransientError
from exporter.export import runner
from exporter.export.destination import PART_STRIDE
from exporter.jobs import ExportJob, schedule
from exporter.jobs.split import SplitRepo, plan_parts
from exporter.local.host import drain
from exporter.runs import RunStatus
from exporter.ucd.segments import SegmentRef
from tests.destination_helpers import (
    assert_bytes_match_a_clean_export,
    assert_rows_match_the_csv_export,
    create_with_large_window,
    gzip_members,
)
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once, due_at
from tests.helpers import run_together

MiB = 1024 * 1024
SEGMENT_ROWS = 80_000  # every part's CSV above S3's 5 MiB minimum part size
GZIP_S3_ROWS = 250_000  # and every part's gzip


class Watched:
    """The real destination, counting blocks staged and commits; `fail` (a block index) fails once, transiently."""

    def __init__(self, inner, state):
        self.inner, self.state = inner, state
        self.prefix = inner.prefix

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)  # the split methods exist only where the type has them
        if name != "commit_parts":
            return attribute

        def commit_parts(*args, **kwargs):
            with self.state["lock"]:
                self.state["commits"] += 1
            return attribute(*args, **kwargs)

        return commit_parts

    def stage_block(self, path, index, data):
        with self.state["lock"]:
            if index == self.state.get("fail"):
                self.state["fail"] = None
                raise TransientError("the storage service is unavailable or throttling (503 ServerBusy)")
        answer = self.inner.stage_block(path, index, data)
        with self.state["lock"]:
            self.state["staged"][index] += 1
        return answer

    def resume_upload(self, path, state, staged):
        self.inner.resume_upload(path, state, staged)

    def commit_blocks(self, path, count):
        with self.state["lock"]:
            self.state["commits"] += 1
        self.inner.commit_blocks(path, count)

    def abandon_blocks(self, path):
        self.inner.abandon_blocks(path)


def watched(contexts, fail: int | None = None) -> dict:
    state = {"staged": Counter(), "commits": 0, "fail": fail, "lock": threading.Lock()}
    for c in contexts:
        c.open_destination = lambda *a: Watched(real_open_destination(*a), state)
    return state


def a_window_of_three_parts(ctx, clock, kit, monkeypatch, file_format: str = "csv") -> str:
    """An integration whose first window holds three segments and splits in three parts; its job queued."""
    rows = GZIP_S3_ROWS if file_format != "csv" and kit.kind == "s3" else SEGMENT_ROWS
    iid = create_with_large_window(ctx, clock, kit, rows, format=file_format)
    total = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, ACT, ACT + H))
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=total // 3 + 1))
    monkeypatch.setattr(runner, "BLOCK_BYTES", 5 * MiB)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    return iid


def workers(ctx, settings, clock, n: int = 2) -> list[Context]:
    return [
        Context.create(dataclasses.replace(settings, split_bytes=ctx.settings.split_bytes), clock) for _ in range(n)
    ]


def splits(kit) -> bool:
    return kit.kind in ("azure_blob", "s3")


def assert_delivered_once(ctx, kit, scratch_kit, iid, state) -> None:
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    contents = assert_exactly_once(ctx, kit, iid)
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)
    if ctx.repo.get(ACCOUNT, iid).format != "csv":
        assert gzip_members(next(iter(contents.values()))) >= 3, "a member per segment at least"
        assert_rows_match_the_csv_export(ctx, iid, contents, scratch_kit)
    assert state["commits"] == 1, "the file is committed once"
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert run.status == RunStatus.EXPORTED and run.bytes == len(next(iter(contents.values())))
    assert SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT)) is None


@pytest.mark.parametrize("file_format", ["csv", "csv.gz", "jsonl.gz"])
def test_a_window_split_in_three_parts_by_two_workers_is_the_same_bytes(
    ctx, settings, clock, kit, scratch_kit, monkeypatch, file_format
):
    iid = a_window_of_three_parts(ctx, clock, kit, monkeypatch, file_format)
    pool = workers(ctx, settings, clock)
    state = watched([ctx, *pool])
    first = drain(ctx, max_jobs=1)  # the integration's job: plans the parts and queues them
    assert first["jobs"] == 1
    plan = SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT))
    if not splits(kit):
        assert plan is None and first["windows_exported"] == 1, "GCS exports the window whole"
    else:
        assert plan is not None and plan.parts == 3
        results = run_together(lambda i: drain(pool[i]), 2)
        assert sum(r["jobs"] for r in results) == 3 and sum(r["windows_exported"] for r in results) == 1
        parts = {index // PART_STRIDE for index in state["staged"]}
        assert parts == {0, 1, 2} and set(state["staged"].values()) == {1}, "each block staged once"
    assert_delivered_once(ctx, kit, scratch_kit, iid, state)


def test_a_failed_part_is_retried_without_disturbing_the_others(ctx, settings, clock, kit, scratch_kit, monkeypatch):
    if not splits(kit):
        pytest.skip("GCS windows are not split")
    iid = a_window_of_three_parts(ctx, clock, kit, monkeypatch)
    state = watched([ctx], fail=PART_STRIDE)  # part 1's first block fails once
    outcome = drain(ctx)
    assert outcome["failed_deliveries"] == 1 and outcome["windows_exported"] == 1
    assert set(state["staged"].values()) == {1}, "no block of another part (nor of part 1) is staged again"
    assert_delivered_once(ctx, kit, scratch_kit, iid, state)


def test_two_workers_racing_on_one_part_give_one_commit(ctx, settings, clock, kit, scratch_kit, monkeypatch):
    if not splits(kit):
        pytest.skip("GCS windows are not split")
    iid = a_window_of_three_parts(ctx, clock, kit, monkeypatch)
    pool = workers(ctx, settings, clock)
    state = watched([ctx, *pool])
    drain(ctx, max_jobs=1)
    for part in range(3):  # every part's message delivered twice: two workers race on each part
        ctx.storage.queue().send_message(ExportJob(ACCOUNT, iid, "part", to_unix(ACT), part).to_message())
    results = run_together(lambda i: drain(pool[i]), 2)
    assert sum(r["jobs"] for r in results) == 6
    assert_delivered_once(ctx, kit, scratch_kit, iid, state)


def test_a_plan_cuts_whole_segments_of_about_equal_size():
    refs = [SegmentRef(i, f"s{i}", f"acme/events/2026/11/28/00/{i:013d}-s{i}.parquet", size=10) for i in range(10)]
    assert plan_parts(refs, 1000) == (), "one part is enough"
    assert plan_parts(refs, 34) == (refs[0].path, refs[3].path, refs[7].path), "3, 4 and 3 segments"
    assert plan_parts(refs, 1) == tuple(r.path for r in refs), "at most one part per segment"
    assert len(plan_parts(refs * 4, 1)) == 16, "at most 16 parts"


@pytest.mark.parametrize(("file_format", "manifest"), [("parquet", False), ("csv.gz", True)])
def test_a_file_that_cannot_be_continued_is_not_split(ctx, clock, azure_kit, monkeypatch, file_format, manifest):
    iid = create_with_large_window(ctx, clock, azure_kit, 5_000, format=file_format, manifest=manifest)
    total = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, ACT, ACT + H))
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=total // 3 + 1))
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1

    first = drain(ctx)
    assert first["jobs"] == 1 and first["windows_exported"] == 1, "one job exports the window whole"
    assert SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT)) is None
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    assert ctx.runs.get(ACCOUNT, iid, to_unix(ACT)).file.endswith("." + file_format)
