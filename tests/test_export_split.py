"""Split windows (docs/architecture.md, "Windows of any size"), once per destination type.

A window above `EXPORT_SPLIT_BYTES` is exported in parts, one queue job each, by several workers at
once, and committed once, in order: the file must be byte-identical to a one-worker export (header
once), in every row format (a gzip file's parts begin at a segment where a member begins, also when
many small segments share members).
Azure Blob and S3 parts stage into the file's own upload; GCS parts stage in the service's staging
container and one relay sends them, in order and resumably, into the file's resumable session
(exporter/destinations/gcs_relay.py).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import threading
from collections import Counter

import pytest

from exporter.clock import to_unix
from exporter.context import Context
from exporter.destinations import gcs_relay
from exporter.destinations import open_destination as real_open_destination
from exporter.destinations.gcs import GcsDestination
from exporter.destinations.gcs_relay import Piece, pieces
from exporter.errors import TransientError
from exporter.export import runner
from exporter.export.destination import PART_STRIDE
from exporter.export.formats import compress
from exporter.export.plan import Selection
from exporter.export.progress import ProgressRepo
from exporter.jobs import ExportJob, schedule
from exporter.jobs.split import RELAY_PART, SplitRepo, plan_parts
from exporter.jobs.staging import StagingArea
from exporter.local.host import drain
from exporter.runs import RunStatus
from exporter.ucd import parse_upsert
from exporter.ucd.segments import SegmentRef
from tests.destination_helpers import (
    assert_bytes_match_a_clean_export,
    assert_members_span_segments,
    assert_rows_match_the_csv_export,
    create_with_large_window,
    create_with_members_of_small_segments,
    gzip_members,
    make_kit,
    part_minimum,
    takes_any_block,
)
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once, due_at
from tests.helpers import run_together

MiB = 1024 * 1024
SEGMENT_ROWS = 80_000  # every part's CSV above AWS's 5 MiB minimum part size
GZIP_S3_ROWS = 250_000  # and every part's gzip


class Killed(BaseException):
    """The worker process dies: nothing of ours runs after it (no `except Exception` catches it)."""


class Watched:
    """The real destination, counting each part's blocks staged and commits (GCS: the blocks it relays into the
    file, counted on the instance, since the destination relays into itself).

    `state["fail"]` (part, block) fails that block once, transiently, and so does `state["fail_relay"]` (a
    relayed block); `state["kill_after"]` (a relayed block)
    kills the worker once that block is sent; `state["on_relay"]` runs after every relayed block.
    """

    def __init__(self, inner, state, relayed: bool):
        self.inner, self.state, self.relayed = inner, state, relayed
        self.prefix = inner.prefix
        if relayed:
            real_stage, real_commit = inner.stage_block, inner.commit_blocks

            def commit_blocks(path, count):
                with state["lock"]:
                    state["commits"] += 1
                real_commit(path, count)

            inner.stage_block = lambda path, index, data: relayed_block(
                state, lambda: real_stage(path, index, data), path, index
            )
            inner.commit_blocks = commit_blocks

    def __getattr__(self, name):
        attribute = getattr(self.inner, name)  # the split methods exist only where the type has them
        if name != "commit_parts" or self.relayed:
            return attribute

        def commit_parts(*args, **kwargs):
            with self.state["lock"]:
                self.state["commits"] += 1
            return attribute(*args, **kwargs)

        return commit_parts

    def stage_block(self, path, index, data):
        if self.relayed:  # counted on the instance (relayed_block)
            return self.inner.stage_block(path, index, data)
        stage = lambda: self.inner.stage_block(path, index, data)  # noqa: E731 - parts stage into the file itself
        return stage_part(self.state, index // PART_STRIDE, index % PART_STRIDE, stage)

    def resume_upload(self, path, state, staged):
        self.inner.resume_upload(path, state, staged)

    def commit_blocks(self, path, count):
        if not self.relayed:  # a relaying destination counts its own (on the instance, above)
            with self.state["lock"]:
                self.state["commits"] += 1
        self.inner.commit_blocks(path, count)

    def abandon_blocks(self, path):
        self.inner.abandon_blocks(path)


def relayed_block(state, stage, path, index):
    """A block sent into a GCS file's session (the relay's): counted, failed or killed as `state` says."""
    with state["lock"]:
        if index == state["fail_relay"]:
            state["fail_relay"] = None
            raise TransientError("Cloud Storage is unavailable or throttling (503)")
    answer = stage()
    with state["lock"]:
        state["relayed"][index] += 1
        killed = index == state["kill_after"]
        if killed:
            state["kill_after"] = None
    if killed:
        raise Killed()  # sent to GCS, but the worker died before recording it
    state["on_relay"]()
    return answer


def stage_part(state, part: int, block: int, stage):
    with state["lock"]:
        if (part, block) == state["fail"]:
            state["fail"] = None
            raise TransientError("the storage service is unavailable or throttling (503 ServerBusy)")
    answer = stage()
    with state["lock"]:
        state["staged"][(part, block)] += 1
    return answer


def watched(contexts, kit, monkeypatch, fail=None, fail_relay=None, kill_after=None, on_relay=lambda: None) -> dict:
    """Watch the destination of `contexts` and, for GCS, the staging area its parts stage in."""
    state = {
        "staged": Counter(),  # (part, block): times staged
        "relayed": Counter(),  # GCS: block of the file: times sent
        "commits": 0,
        "fail": fail,
        "fail_relay": fail_relay,
        "kill_after": kill_after,
        "on_relay": on_relay,
        "lock": threading.Lock(),
    }
    relayed = kit.kind == "gcs"
    for c in contexts:
        c.open_destination = lambda *a: Watched(real_open_destination(*a), state, relayed)
    real = StagingArea.stage_block

    def stage_block(area, path, index, data):
        part = int(path.rsplit("-", 1)[1])  # .../part-001
        return stage_part(state, part, index, lambda: real(area, path, index, data))

    monkeypatch.setattr(StagingArea, "stage_block", stage_block)
    return state


# Only an S3 at AWS's minimum part size needs parts and blocks of 5 MiB (tests/test_s3_part_minimum.py);
# elsewhere, the suite's moto included (256 KiB parts), the window is a quarter of the rows, in blocks of a
# quarter of the size (1.25 MiB: on GCS's 256 KiB grid), and on Azure (blocks of any size) a sixteenth: the
# same blocks per part.
SMALL = 4


def a_window_of_three_parts(ctx, clock, kit, monkeypatch, file_format: str = "csv") -> str:
    """An integration whose first window holds three segments and splits in three parts; its job queued.

    GCS too, against the planner's rule (a GCS window is exported whole): the relay is what is tested."""
    monkeypatch.setattr(GcsDestination, "split_windows", True)
    aws_parts = part_minimum(kit) > 5 * MiB // SMALL
    rows = GZIP_S3_ROWS if file_format != "csv" and aws_parts else SEGMENT_ROWS
    scale = 1 if aws_parts else SMALL * SMALL if takes_any_block(kit) else SMALL
    iid = create_with_large_window(ctx, clock, kit, rows // scale, format=file_format)
    total = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, ACT, ACT + H))
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=total // 3 + 1))
    monkeypatch.setattr(runner, "BLOCK_BYTES", 5 * MiB // scale)
    if scale > SMALL:  # a gzip member (and so a part) still ends with each segment, as at a quarter of the rows
        monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", compress.MEMBER_SEGMENT_BYTES * SMALL // scale)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    return iid


def workers(ctx, settings, clock, n: int = 2) -> list[Context]:
    return [
        Context.create(dataclasses.replace(settings, split_bytes=ctx.settings.split_bytes), clock) for _ in range(n)
    ]


def staged_blobs(ctx, iid) -> list[str]:
    return [b.name for b in ctx.storage.staging_container().list_blobs(name_starts_with=f"{ACCOUNT}/{iid}/")]


def assert_delivered_once(ctx, kit, scratch_kit, iid, state) -> dict[tuple[int, int], bytes]:
    """The window's file delivered once, as a clean export, committed once, nothing left staged; its contents."""
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
    assert staged_blobs(ctx, iid) == [], "nothing is left in the staging container"
    return contents


def assert_relayed_once(state) -> None:
    """GCS: every block of the file sent once, in order from 0 (other types relay nothing)."""
    assert sorted(state["relayed"]) == list(range(len(state["relayed"])))
    assert set(state["relayed"].values()) <= {1}


@pytest.mark.parametrize("file_format", ["csv", "csv.gz", "jsonl.gz"])
def test_a_window_split_in_three_parts_by_two_workers_is_the_same_bytes(
    ctx, settings, clock, kit, scratch_kit, monkeypatch, file_format
):
    split_in_three_parts_by_two_workers(ctx, settings, clock, kit, scratch_kit, monkeypatch, file_format)


def split_in_three_parts_by_two_workers(ctx, settings, clock, kit, scratch_kit, monkeypatch, file_format="csv"):
    """A window in three parts, staged by two workers at once, committed once: the bytes of a clean export."""
    iid = a_window_of_three_parts(ctx, clock, kit, monkeypatch, file_format)
    pool = workers(ctx, settings, clock)
    state = watched([ctx, *pool], kit, monkeypatch)
    first = drain(ctx, max_jobs=1)  # the integration's job: plans the parts and queues them
    assert first["jobs"] == 1
    plan = SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT))
    assert plan is not None and plan.parts == 3
    results = run_together(lambda i: drain(pool[i]), 2)
    assert sum(r["jobs"] for r in results) == 3 and sum(r["windows_exported"] for r in results) == 1
    assert {part for part, _ in state["staged"]} == {0, 1, 2}
    assert set(state["staged"].values()) == {1}, "each block staged once"
    assert_relayed_once(state)
    assert (len(state["relayed"]) > 0) == (kit.kind == "gcs")
    assert_delivered_once(ctx, kit, scratch_kit, iid, state)


@pytest.mark.parametrize("file_format", ["csv.gz", "jsonl.gz"])
def test_a_window_of_small_segments_split_in_three_parts_by_two_workers_is_the_same_bytes(
    ctx, settings, clock, azure_kit, request, tag, monkeypatch, file_format
):
    iid = create_with_members_of_small_segments(ctx, clock, azure_kit, monkeypatch, format=file_format)
    refs = ctx.ucd.segments(ACCOUNT, ACT, ACT + H)
    stored = sum(ref.size for ref in refs)
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=stored // 3 + 1))
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    pool = workers(ctx, settings, clock)
    state = watched([ctx, *pool], azure_kit, monkeypatch)
    drain(ctx, max_jobs=1)
    plan = SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT))
    assert plan is not None and plan.parts == 3
    groups = dict(zip([r.path for r in refs], compress.member_groups(r.size for r in refs)))
    before = {refs[i].path: refs[i - 1].path for i in range(1, len(refs))}
    assert all(groups[first] != groups[before[first]] for first in plan.firsts[1:]), "each part begins a member"
    results = run_together(lambda i: drain(pool[i]), 2)
    assert sum(r["windows_exported"] for r in results) == 1
    contents = assert_delivered_once(ctx, azure_kit, make_kit(request, "azure_blob", tag + "s"), iid, state)
    assert_members_span_segments(contents)


def test_a_failed_part_is_retried_without_disturbing_the_others(ctx, settings, clock, kit, scratch_kit, monkeypatch):
    iid = a_window_of_three_parts(ctx, clock, kit, monkeypatch)
    state = watched([ctx], kit, monkeypatch, fail=(1, 0))  # part 1's first block fails once
    outcome = drain(ctx)
    assert outcome["failed_deliveries"] == 1 and outcome["windows_exported"] == 1
    assert set(state["staged"].values()) == {1}, "no block of another part (nor of part 1) is staged again"
    assert_relayed_once(state)
    assert_delivered_once(ctx, kit, scratch_kit, iid, state)


def test_two_workers_racing_on_one_part_give_one_commit(ctx, settings, clock, kit, scratch_kit, monkeypatch):
    iid = a_window_of_three_parts(ctx, clock, kit, monkeypatch)
    pool = workers(ctx, settings, clock)
    state = watched([ctx, *pool], kit, monkeypatch)
    drain(ctx, max_jobs=1)
    for part in range(3):  # every part's message delivered twice: two workers race on each part
        ctx.storage.queue().send_message(ExportJob(ACCOUNT, iid, "part", to_unix(ACT), part).to_message())
    results = run_together(lambda i: drain(pool[i]), 2)
    assert sum(r["jobs"] for r in results) == 6
    assert_relayed_once(state)
    assert_delivered_once(ctx, kit, scratch_kit, iid, state)


# ------------------------------------------------------------------ GCS: the relay


def test_a_gcs_window_large_enough_to_split_is_exported_whole(ctx, settings, clock, gcs, monkeypatch):
    """The planner's rule for GCS (a relay after the parts is slower than one worker at any size)."""
    iid = create_with_large_window(ctx, clock, gcs, SEGMENT_ROWS // SMALL)
    total = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, ACT, ACT + H))
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=total // 3 + 1))
    monkeypatch.setattr(runner, "BLOCK_BYTES", 5 * MiB // SMALL)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    state = watched([ctx], gcs, monkeypatch)
    outcome = drain(ctx)
    assert outcome["jobs"] == 1 and outcome["windows_exported"] == 1, "one job exported the window whole"
    assert state["staged"] == Counter(), "no part staged in the staging container"
    assert_relayed_once(state)  # the file's own blocks (counted as the relay's), each sent once, in order
    assert state["commits"] == 1
    assert SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT)) is None
    assert staged_blobs(ctx, iid) == []
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert run.status == RunStatus.EXPORTED and run.bytes == len(
        next(iter(assert_exactly_once(ctx, gcs, iid).values()))
    )


def relayed_in_pieces(ctx, clock, gcs, monkeypatch) -> str:
    """A GCS window of three parts, relayed in pieces that end off GCS's 256 KiB grid (a tail is carried)."""
    monkeypatch.setattr(gcs_relay, "RELAY_BLOCK", 3 * MiB // SMALL + 12_345)  # as the window, a quarter
    return a_window_of_three_parts(ctx, clock, gcs, monkeypatch)


def test_a_relay_whose_time_runs_out_continues_in_a_follow_up(ctx, clock, gcs, request, tag, monkeypatch):
    iid = relayed_in_pieces(ctx, clock, gcs, monkeypatch)
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, max_seconds_per_run=1))
    state = watched([ctx], gcs, monkeypatch, on_relay=lambda: clock.advance(seconds=1))  # a second per block
    results: list = []
    drain(ctx, on_result=results.append)

    pieces = len(state["relayed"])
    assert pieces >= 5, "the file is relayed in several pieces"
    assert sum(r.follow_up for r in results) == pieces - 1, "one piece per invocation, each continued by a follow-up"
    assert_relayed_once(state)
    assert set(state["staged"].values()) == {1}, "the parts are not staged again"
    assert_delivered_once(ctx, gcs, make_kit(request, "gcs", tag + "s"), iid, state)


def test_a_relay_that_fails_is_continued_by_the_redelivery_at_once(ctx, clock, gcs, request, tag, monkeypatch):
    iid = relayed_in_pieces(ctx, clock, gcs, monkeypatch)
    state = watched([ctx], gcs, monkeypatch, fail_relay=2)
    outcome = drain(ctx)  # the clock stands still: a claim that was kept would hold the redelivery off
    assert outcome["failed_deliveries"] == 1 and outcome["windows_exported"] == 1, "the failed relay gave up its claim"
    assert_relayed_once(state)
    assert set(state["staged"].values()) == {1}, "the parts are not staged again"
    assert_delivered_once(ctx, gcs, make_kit(request, "gcs", tag + "s"), iid, state)


@pytest.mark.parametrize("k", [0, 2])
def test_a_worker_killed_mid_relay_is_continued_resending_at_most_one_block(
    ctx, clock, gcs, request, tag, monkeypatch, k
):
    iid = relayed_in_pieces(ctx, clock, gcs, monkeypatch)
    state = watched([ctx], gcs, monkeypatch, kill_after=k)
    with pytest.raises(Killed):
        drain(ctx)
    first = Counter(state["relayed"])
    assert sorted(first) == list(range(k + 1))
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None and state["commits"] == 0
    recorded = ProgressRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT), RELAY_PART)
    assert (recorded.blocks if recorded else 0) == k, "block k was sent, not recorded"
    stored = list(ctx.runs.table.query_entities(f"PartitionKey eq '{ACCOUNT}~{iid}~progress'"))
    handles = [entity["handle"] for entity in stored if entity["handle"]]  # the parts' blobs need none
    assert len(handles) == (k > 0) and not any("http" in h for h in handles), "the session URI is sealed at rest"

    clock.advance(seconds=ctx.settings.lease_seconds)  # the dead committer's claim, and the integration's lease, lapse
    assert schedule(ctx).queued == 1
    assert drain(ctx)["windows_exported"] == 1
    second = state["relayed"] - first
    assert min(second) == k and set(first) & set(second) == {k}, "only block k is sent again, into the same session"
    assert set(state["staged"].values()) == {1}, "the parts are not staged again"
    assert_delivered_once(ctx, gcs, make_kit(request, "gcs", tag + "s"), iid, state)


def test_a_staged_part_that_is_gone_makes_the_window_split_again(ctx, clock, gcs, request, tag, monkeypatch):
    iid = relayed_in_pieces(ctx, clock, gcs, monkeypatch)
    state = watched([ctx], gcs, monkeypatch, kill_after=1)
    with pytest.raises(Killed):
        drain(ctx)
    ctx.storage.staging_container().delete_blob(f"{ACCOUNT}/{iid}/{to_unix(ACT):012d}/part-002")  # the lifecycle rule

    clock.advance(seconds=ctx.settings.lease_seconds)
    assert schedule(ctx).queued == 1
    assert drain(ctx)["windows_exported"] == 1
    assert set(state["staged"].values()) == {2}, "every part staged again, once"
    assert_delivered_once(ctx, gcs, make_kit(request, "gcs", tag + "s"), iid, state)


def test_the_relay_cuts_the_bytes_still_to_send_into_pieces_of_each_staged_part():
    sources = [("p0", 10), ("p1", 0), ("p2", 7)]
    assert pieces(sources, 4) == [Piece("p0", 0, 4), Piece("p0", 4, 4), Piece("p0", 8, 2)] + [
        Piece("p2", 0, 4),
        Piece("p2", 4, 3),
    ], "a piece never spans two parts"
    assert pieces(sources, 4, start=6) == [Piece("p0", 6, 4), Piece("p2", 0, 4), Piece("p2", 4, 3)]
    assert pieces(sources, 5, start=12) == [Piece("p2", 2, 5)], "from the bytes already sent, whatever the size"
    assert pieces(sources, 4, start=17) == []


def test_a_plan_cuts_whole_segments_of_about_equal_size():
    refs = [SegmentRef(i, f"s{i}", f"acme/events/2026/11/28/00/{i:013d}-s{i}.parquet", size=10) for i in range(10)]
    assert plan_parts(refs, 1000) == (), "one part is enough"
    assert plan_parts(refs, 34) == (refs[0].path, refs[3].path, refs[7].path), "3, 4 and 3 segments"
    assert plan_parts(refs, 1) == tuple(r.path for r in refs), "at most one part per segment"
    assert len(plan_parts(refs * 4, 1)) == 16, "at most 16 parts"


def test_a_gzip_plan_begins_parts_only_where_a_member_begins(monkeypatch):
    refs = [SegmentRef(i, f"s{i}", f"acme/events/2026/11/28/00/{i:013d}-s{i}.parquet", size=10) for i in range(10)]
    monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", 30)  # members of segments 0-2, 3-5, 6-8 and 9
    assert plan_parts(refs, 34, "csv") == (refs[0].path, refs[3].path, refs[7].path), "csv: any segment"
    assert plan_parts(refs, 34, "csv.gz") == (refs[0].path, refs[3].path, refs[6].path), "at the nearest member start"
    starts = {refs[i].path for i in (0, 3, 6, 9)}
    assert set(plan_parts(refs, 1, "jsonl.gz")) <= starts, "at most 4 parts, however many were asked for"
    monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", 1000)
    assert plan_parts(refs, 1, "csv.gz") == (), "one member: exported whole (and resumable)"


@pytest.mark.parametrize(("file_format", "manifest"), [("parquet", False), ("csv.gz", True)])
def test_a_file_that_cannot_be_written_in_parts_is_not_split(ctx, clock, azure_kit, monkeypatch, file_format, manifest):
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


def test_a_typed_split_file_keeps_the_parameter_types_of_when_it_was_planned(ctx, clock, azure_kit, monkeypatch):
    """Parts run later than the plan, and the catalog may widen meanwhile: every part, and a replay, use
    the types fixed on the run record when the window was split."""
    iid = a_window_of_three_parts(ctx, clock, azure_kit, monkeypatch, "jsonl.gz")
    price = {"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z", "event_params": {"price": 10}}
    ctx.ucd.upsert(parse_upsert(ACCOUNT, {"users": [{"user_id": "u-late", "events": [price]}]}))  # after the window
    assert drain(ctx, max_jobs=1)["jobs"] == 1  # the plan
    planned = Selection.from_json(json.loads(ctx.runs.get(ACCOUNT, iid, to_unix(ACT)).selection))
    assert dict(planned.param_types or ()).get("price") in ("integer", "number")

    price["event_params"] = {"price": "ten"}  # the catalog widens price to a string before the parts run
    ctx.ucd.upsert(parse_upsert(ACCOUNT, {"users": [{"user_id": "u-later", "events": [price]}]}))
    drain(ctx)

    record = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert record.status == RunStatus.EXPORTED
    assert Selection.from_json(json.loads(record.selection)).param_types == planned.param_types
    lines = gzip.decompress(azure_kit.read(record.file)).decode().splitlines()
    prices = [json.loads(line)["price"] for line in lines if '"purchase"' in line]
    assert prices and all(isinstance(p, (int, float)) for p in prices if p is not None), "numbers, as planned"
