"""Resumable windows (docs/architecture.md, "Windows of any size"), once per destination type and row format.

A window of several blocks (on S3, each of its minimum part size) is exported through the worker with a
time budget that runs out after every block, so each invocation stages one block and hands on to a
follow-up; a worker killed after k staged blocks is redelivered and continues. Each file must be
byte-identical to an export in one go, and no block recorded as staged is uploaded again. A gzip
file (several members: one per large segment at least, one per about ten of 200 small segments)
decompresses to the rows of the window's CSV file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import Counter

import pytest

from exporter.clock import to_unix
from exporter.export import resume, runner, sha256
from exporter.export.formats import compress, parquet
from exporter.export.naming import manifest_path
from exporter.export.plan import Selection
from exporter.export.progress import Checkpoints, ProgressRepo
from exporter.export.runner import export_window
from exporter.jobs import schedule
from exporter.local.host import drain
from exporter.runs import RunStatus
from exporter.windows import Window
from tests.destination_helpers import (
    assert_bytes_match_a_clean_export,
    assert_members_span_segments,
    assert_rows_match_the_csv_export,
    create_with_large_window,
    create_with_members_of_small_segments,
    destination_from_body,
    gzip_members,
    make_kit,
    part_minimum,
    takes_any_block,
)
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once, deliver_one, due_at, selection_recorded
from tests.helpers import call
from tests.resume_helpers import (
    Killed,
    Staging,
    a_block_an_invocation,
    one_delivery_with_time_enough,
    staging,
    time_runs_out_after_every_block,
)

MiB = 1024 * 1024
BLOCK = 5 * MiB  # AWS's minimum part size: every block but the last is at least this
SEGMENT_ROWS = 60_000
ROW_FORMATS = (
    "csv",
    "csv.gz",
    "jsonl.gz",
)  # the continuable row formats (Parquet: tests/test_export_parquet_resume.py)
GZIP_S3_ROWS = 250_000  # a gzip file of 3 such segments holds 3 blocks of 5 MiB


# Only an S3 at AWS's minimum part size needs 5 MiB blocks (tests/test_s3_part_minimum.py). Elsewhere the same
# window shape (three segments of a block each, a block cut as a segment ends) is made of a twentieth of the rows
# in 256 KiB blocks: GCS's grid and the suite's moto's least part. A gzip file's block ends with a member, and a
# member with a segment once it covers enough stored bytes: on GCS and S3, segments of 30,000 rows; on Azure,
# which takes blocks of any size, a quarter of that in smaller blocks, the members' reach cut alike
# (`a_large_window`). One block a segment keeps a worker's kill after block k in step with block k - 1's record.
KiB = 1024


def geometry(kit, file_format: str = "csv") -> tuple[int, int]:
    """(rows per segment, block bytes) of a large window of this format on this kit's destination."""
    gzip = file_format != "csv"
    if part_minimum(kit) > MiB // 4:
        return (GZIP_S3_ROWS if gzip else SEGMENT_ROWS), BLOCK
    if not gzip:
        return SEGMENT_ROWS // 20, 256 * KiB
    return (7_500, 32 * KiB) if takes_any_block(kit) else (30_000, 256 * KiB)


def a_large_window(ctx, clock, kit, monkeypatch, file_format: str = "csv") -> str:
    """An integration whose first window holds at least three blocks of its format in three segments, due now,
    its job queued (`geometry`: at AWS's part size ~15 MiB of CSV in 5 MiB blocks; elsewhere smaller blocks)."""
    rows, block = geometry(kit, file_format)
    iid = create_with_large_window(ctx, clock, kit, rows, format=file_format)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    monkeypatch.setattr(runner, "BLOCK_BYTES", block)
    if takes_any_block(kit):  # a gzip member ends with each (quarter-size) segment, as with the full size
        monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", compress.MEMBER_SEGMENT_BYTES // 4)
    return iid


def assert_same_file_as_a_clean_export(ctx, kit, scratch_kit, iid, *, rows: bool = True) -> dict:
    """The file delivered once, byte-identical to an export in one go; a gzip file also holds the CSV's rows
    (`rows=False` where a test of the same window shape checks the clean export's rows: the bytes carry them)."""
    contents = assert_exactly_once(ctx, kit, iid)
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)
    if ctx.repo.get(ACCOUNT, iid).selection.format != "csv":
        assert gzip_members(next(iter(contents.values()))) >= 3, "a member per segment at least"
        if rows:
            assert_rows_match_the_csv_export(ctx, iid, contents, scratch_kit)
    return contents


@pytest.mark.parametrize("file_format", ROW_FORMATS)
def test_a_window_taking_several_invocations_is_the_same_bytes_as_one(
    ctx, clock, kit, scratch_kit, monkeypatch, file_format
):
    several_invocations(ctx, clock, kit, scratch_kit, monkeypatch, file_format)


def several_invocations(ctx, clock, kit, scratch_kit, monkeypatch, file_format="csv"):
    """A large window exported a block an invocation: one file, each block staged once, its SHA-256 carried."""
    iid = a_large_window(ctx, clock, kit, monkeypatch, file_format)
    seen, results = a_block_an_invocation(ctx, clock, monkeypatch)

    assert len(results) >= 3, "the window took several invocations"
    assert [r.follow_up for r in results[:-1]] == [True] * (len(results) - 1)
    assert [r.exported for r in results] == [0] * (len(results) - 1) + [1]
    assert len(seen) >= 3 and set(seen.values()) == {1}, "every block staged exactly once"
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    contents = assert_same_file_as_a_clean_export(ctx, kit, scratch_kit, iid)
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert run.attempts == len(results) and run.bytes == len(next(iter(contents.values())))
    data = next(iter(contents.values()))
    assert run.sha256 == hashlib.sha256(data).hexdigest(), "the run record's SHA-256, carried across invocations"
    progress = ProgressRepo(ctx.runs.table, ctx.integrations.secrets)
    assert progress.get(ACCOUNT, iid, to_unix(ACT)) is None, "a committed window keeps no progress"


@pytest.mark.parametrize("file_format", ROW_FORMATS)
@pytest.mark.parametrize("k", [1, 2])
def test_a_worker_killed_after_k_staged_blocks_is_continued_restaging_at_most_one(
    ctx, clock, kit, scratch_kit, monkeypatch, k, file_format
):
    iid = a_large_window(ctx, clock, kit, monkeypatch, file_format)
    first: Counter = Counter()
    staging(ctx, monkeypatch, first, kill_after=k)
    with pytest.raises(Killed):
        deliver_one(ctx)
    assert sorted(first) == list(range(k + 1))
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert run.status == RunStatus.EXPORTING, "a killed worker records nothing more"

    second: Counter = Counter()
    staging(ctx, monkeypatch, second)
    assert deliver_one(ctx).exported == 1
    assert min(second) == k and set(first) & set(second) == {k}, "only block k is staged again"
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    # The same window's clean export is checked against the CSV's rows by the test above, per type and format.
    assert_same_file_as_a_clean_export(ctx, kit, scratch_kit, iid, rows=False)


def test_a_worker_killed_before_the_commit_stages_only_the_last_block_again(
    ctx, clock, azure_kit, azure_scratch_kit, monkeypatch
):
    """The last block's progress is not recorded (the commit follows at once): a death before the commit costs it alone."""
    iid = a_large_window(ctx, clock, azure_kit, monkeypatch)
    first: Counter = Counter()
    staging(ctx, monkeypatch, first)
    monkeypatch.setattr(Staging, "commit_blocks", lambda *a: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        deliver_one(ctx)
    last = max(first)
    assert sorted(first) == list(range(last + 1)) and last >= 2, "every block staged, three at least"
    recorded = ProgressRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT))
    assert recorded is not None and recorded.blocks == last, "every block but the last is recorded"

    monkeypatch.undo()
    second: Counter = Counter()
    staging(ctx, monkeypatch, second)
    monkeypatch.setattr(runner, "BLOCK_BYTES", geometry(azure_kit)[1])
    assert deliver_one(ctx).exported == 1
    assert sorted(second) == [last], "only the last block is staged again"
    assert_same_file_as_a_clean_export(ctx, azure_kit, azure_scratch_kit, iid)


def a_large_window_with_a_manifest(ctx, clock, kit, monkeypatch) -> str:
    rows, block = geometry(kit)
    iid = create_with_large_window(ctx, clock, kit, rows, manifest=True)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    monkeypatch.setattr(runner, "BLOCK_BYTES", block)
    return iid


def assert_the_manifest_describes_the_file(ctx, kit, scratch_kit, iid) -> None:
    """Delivered, the manifest's SHA-256, bytes and rows are the file's; both are those of an export in one go."""
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    data, manifest = kit.read(run.file), json.loads(kit.read(manifest_path(run.file)))
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest(), "the SHA-256 of the whole file, across invocations"
    assert (manifest["bytes"], manifest["rows"]) == (len(data), run.rows)
    integration = ctx.repo.get(ACCOUNT, iid)
    clean = destination_from_body(scratch_kit.body(integration.destination.prefix))
    once = export_window(ctx.ucd, ACCOUNT, iid, selection_recorded(ctx, iid, to_unix(ACT)), Window(ACT, ACT + H), clean)
    assert scratch_kit.read(once.path) == data
    assert scratch_kit.read(manifest_path(once.path)) == kit.read(manifest_path(run.file))


def test_a_file_with_a_manifest_over_several_invocations_has_the_manifest_of_one(
    ctx, clock, kit, scratch_kit, monkeypatch
):
    iid = a_large_window_with_a_manifest(ctx, clock, kit, monkeypatch)
    seen, results = a_block_an_invocation(ctx, clock, monkeypatch)

    assert len(results) >= 3 and results[-1].exported == 1, "the window took several invocations"
    seen[0] -= 1  # the manifest is block 0 of an object of its own, written once, after the file's commit
    assert len(seen) >= 3 and set(seen.values()) == {1}, "every block staged exactly once, and one manifest"
    assert_the_manifest_describes_the_file(ctx, kit, scratch_kit, iid)


def test_a_file_with_a_manifest_killed_after_a_block_is_continued_with_its_sha256(
    ctx, clock, azure_kit, azure_scratch_kit, monkeypatch
):
    iid = a_large_window_with_a_manifest(ctx, clock, azure_kit, monkeypatch)
    first: Counter = Counter()
    staging(ctx, monkeypatch, first, kill_after=1)
    with pytest.raises(Killed):
        deliver_one(ctx)
    second: Counter = Counter()
    staging(ctx, monkeypatch, second)
    assert deliver_one(ctx).exported == 1
    second[0] -= 1  # the manifest is block 0 of an object of its own
    assert min(+second) == 1, "of the blocks staged before the death, only block 1 is staged again"
    assert_the_manifest_describes_the_file(ctx, azure_kit, azure_scratch_kit, iid)


def killed_after_a_block_with_its_sha256_state_corrupted(ctx, clock, kit, monkeypatch) -> str:
    """A manifest's window whose worker died after block 1, the recorded state (after block 0) made one
    this machine cannot continue: a host of the other byte order saved it (its 32-bit words swapped)."""
    iid = a_large_window_with_a_manifest(ctx, clock, kit, monkeypatch)
    staging(ctx, monkeypatch, Counter(), kill_after=1)
    with pytest.raises(Killed):
        deliver_one(ctx)
    repo = ProgressRepo(ctx.runs.table, ctx.integrations.secrets)
    recorded = repo.get(ACCOUNT, iid, to_unix(ACT))
    assert recorded is not None and recorded.blocks == 1 and len(recorded.digest) == sha256.STATE_BYTES
    swapped = b"".join(recorded.digest[i : i + 4][::-1] for i in range(0, len(recorded.digest), 4))
    repo.clear(ACCOUNT, iid, to_unix(ACT))
    repo.advance(ACCOUNT, iid, to_unix(ACT), dataclasses.replace(recorded, digest=swapped))
    return iid


def test_a_sha256_state_that_cannot_be_restored_starts_the_window_again_not_a_poison_message(
    ctx, clock, azure_kit, azure_scratch_kit, monkeypatch, caplog
):
    iid = killed_after_a_block_with_its_sha256_state_corrupted(ctx, clock, azure_kit, monkeypatch)
    second: Counter = Counter()
    staging(ctx, monkeypatch, second)
    caplog.set_level(logging.WARNING, logger="exporter.export")
    assert deliver_one(ctx).exported == 1, "delivered by this delivery: no failure, no retry"
    second[0] -= 1  # the manifest is block 0 of an object of its own
    assert min(+second) == 0 and set((+second).values()) == {1}, "every block staged again, from block 0"
    assert any("SHA-256 state cannot be continued" in r.getMessage() for r in caplog.records)
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert run.status == RunStatus.EXPORTED
    assert run.note.startswith("started again from the first block") and "SHA-256 state" in run.note, run.note
    listed = call(ctx, "integrations_runs", account=ACCOUNT, id=iid).body["runs"]
    assert [r["note"] for r in listed] == [run.note], "the run history says the window's file started again"
    assert_the_manifest_describes_the_file(ctx, azure_kit, azure_scratch_kit, iid)


def test_an_export_that_starts_again_says_why(ctx, clock, azure_kit, monkeypatch):
    iid = killed_after_a_block_with_its_sha256_state_corrupted(ctx, clock, azure_kit, monkeypatch)
    staging(ctx, monkeypatch, Counter())  # the worker is alive again
    integration = ctx.repo.get(ACCOUNT, iid)
    checkpoints = Checkpoints(ProgressRepo(ctx.runs.table, ctx.integrations.secrets), ACCOUNT, iid, to_unix(ACT))
    window, destination = Window(ACT, ACT + H), ctx.destination_for(integration)
    selection = selection_recorded(ctx, iid, to_unix(ACT))
    result = export_window(ctx.ucd, ACCOUNT, iid, selection, window, destination, checkpoints=checkpoints)
    assert result.complete and "SHA-256 state" in result.restarted
    assert result.staged_bytes == result.bytes, "the whole file staged by this export"
    assert result.sha256 == hashlib.sha256(azure_kit.read(result.path)).hexdigest()


def test_where_a_sha256_state_cannot_be_saved_a_file_with_a_manifest_is_exported_whole(monkeypatch):
    assert resume.continuable(Selection(events=(), format="csv", manifest=True))
    monkeypatch.setattr(sha256, "available", lambda: False)
    assert not resume.continuable(Selection(events=(), format="csv", manifest=True))
    assert resume.continuable(Selection(events=(), format="csv"))


def a_window_of_small_segments(ctx, clock, kit, monkeypatch, file_format: str) -> str:
    """An integration whose first window holds many small segments in members of several of them and blocks
    of a member (`create_with_members_of_small_segments`); its job queued."""
    iid = create_with_members_of_small_segments(ctx, clock, kit, monkeypatch, format=file_format)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    return iid


@pytest.mark.parametrize("file_format", ["csv.gz", "jsonl.gz"])
def test_a_window_of_small_segments_over_several_invocations_is_the_same_bytes_as_one(
    ctx, clock, azure_kit, request, tag, monkeypatch, file_format
):
    iid = a_window_of_small_segments(ctx, clock, azure_kit, monkeypatch, file_format)
    seen, results = a_block_an_invocation(ctx, clock, monkeypatch)

    assert len(results) >= 5 and results[-1].exported == 1, "the window took several invocations"
    assert len(seen) >= 5 and set(seen.values()) == {1}, "every block staged exactly once"
    contents = assert_same_file_as_a_clean_export(ctx, azure_kit, make_kit(request, "azure_blob", tag + "s"), iid)
    assert_members_span_segments(contents)


@pytest.mark.parametrize("file_format", ["csv.gz", "jsonl.gz"])
def test_a_window_of_small_segments_killed_after_block_k_is_resumed_to_the_same_bytes(
    ctx, clock, azure_kit, request, tag, monkeypatch, file_format
):
    iid = a_window_of_small_segments(ctx, clock, azure_kit, monkeypatch, file_format)
    k = 3
    first: Counter = Counter()
    staging(ctx, monkeypatch, first, kill_after=k)
    with pytest.raises(Killed):
        deliver_one(ctx)
    second: Counter = Counter()
    staging(ctx, monkeypatch, second)
    assert deliver_one(ctx).exported == 1
    assert min(second) == k and set(first) & set(second) == {k}, "only block k is staged again"
    contents = assert_same_file_as_a_clean_export(ctx, azure_kit, make_kit(request, "azure_blob", tag + "s"), iid)
    assert_members_span_segments(contents)


def test_the_upload_handle_is_sealed_in_the_progress_record(ctx, clock, kit, monkeypatch):
    iid = a_large_window(ctx, clock, kit, monkeypatch)
    staging(ctx, monkeypatch, Counter())
    time_runs_out_after_every_block(ctx, clock, monkeypatch)
    outcome = deliver_one(ctx)
    assert outcome.follow_up and outcome.exported == 0

    entity = ctx.runs.table.get_entity(f"{ACCOUNT}~{iid}~progress", f"{to_unix(ACT):012d}")
    progress = ProgressRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT))
    assert progress is not None and progress.blocks == 1 and progress.position is not None
    if kit.kind == "azure_blob":
        assert progress.upload.handle == "" and entity["handle"] == ""
    else:  # an S3 UploadId, a GCS session URI (a bearer secret): never stored in the clear
        assert progress.upload.handle and progress.upload.handle not in str(dict(entity))
    if kit.kind == "gcs":
        assert 0 < progress.upload.offset <= geometry(kit)[1] and progress.upload.offset % (256 * 1024) == 0


def lose_the_upload(kit, repo: ProgressRepo, iid: str, progress) -> None:
    """What a week without a commit does: the staged blocks are gone at the service."""
    if kit.kind == "azure_blob":
        kit.container.upload_blob(progress.path, b"other", overwrite=True)  # a commit drops uncommitted blocks
        kit.container.delete_blob(progress.path)
    elif kit.kind == "s3":
        kit.server.client().abort_multipart_upload(
            Bucket=kit.bucket, Key=progress.path, UploadId=progress.upload.handle
        )
    else:
        # The emulator cannot cancel a session (DELETE answers 501); an expired one is unknown (404), as this is.
        expired = dataclasses.replace(progress.upload, handle=progress.upload.handle + "-expired")
        repo.clear(ACCOUNT, iid, to_unix(ACT))
        repo.advance(ACCOUNT, iid, to_unix(ACT), dataclasses.replace(progress, upload=expired))


def test_an_upload_lost_at_the_service_is_exported_again_from_the_start(ctx, clock, kit, scratch_kit, monkeypatch):
    iid = a_large_window(ctx, clock, kit, monkeypatch)
    staging(ctx, monkeypatch, Counter())
    time_runs_out_after_every_block(ctx, clock, monkeypatch)
    assert deliver_one(ctx).follow_up
    repo = ProgressRepo(ctx.runs.table, ctx.integrations.secrets)
    lose_the_upload(kit, repo, iid, repo.get(ACCOUNT, iid, to_unix(ACT)))

    again = one_delivery_with_time_enough(ctx, monkeypatch)
    assert min(again) == 0, "started again from block 0"
    contents = assert_exactly_once(ctx, kit, iid)
    assert_bytes_match_a_clean_export(ctx, iid, contents, scratch_kit)


@pytest.mark.parametrize(
    ("file_format", "manifest", "resumable", "in_parts"),
    [
        ("csv", False, True, True),
        ("csv.gz", False, True, True),
        ("jsonl.gz", False, True, True),
        ("csv", True, True, False),
        ("csv.gz", True, True, False),
        ("parquet", False, True, False),
        ("parquet", True, True, False),
        ("jsonl.gz", True, True, False),
    ],
)
def test_a_file_is_continued_and_only_a_row_format_without_a_manifest_split(file_format, manifest, resumable, in_parts):
    selection = Selection(events=(), format=file_format, manifest=manifest)
    assert resume.continuable(selection) is resumable
    assert resume.splittable(selection) is in_parts


@pytest.mark.parametrize(("file_format", "manifest"), [("parquet", True), ("csv", True), ("jsonl.gz", True)])
def test_a_file_that_cannot_be_continued_is_exported_whole_in_one_invocation(
    ctx, clock, azure_kit, monkeypatch, file_format, manifest
):
    iid = create_with_large_window(ctx, clock, azure_kit, 5_000, format=file_format, manifest=manifest)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    monkeypatch.setattr(sha256, "available", lambda: False)  # a manifest's hash: only where its state can be saved
    monkeypatch.setattr(runner, "BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr(compress, "MEMBER_SEGMENT_BYTES", 1)  # a gzip member per segment: a block may end at each
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 2_048)  # a block may end at each row group
    seen: Counter = Counter()
    staging(ctx, monkeypatch, seen)
    time_runs_out_after_every_block(ctx, clock, monkeypatch)  # a continuable file would stop after a block
    results: list = []
    drain(ctx, on_result=results.append)

    assert [r.exported for r in results] == [1] and not results[0].follow_up, "one invocation, no follow-up"
    seen[0] -= manifest  # the manifest is block 0 of an object of its own
    assert len(seen) > 1 and set(seen.values()) == {1}, "several blocks, each staged once"
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    progress = ProgressRepo(ctx.runs.table, ctx.integrations.secrets)
    assert progress.get(ACCOUNT, iid, to_unix(ACT)) is None, "no progress is recorded for a whole file"
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert run.attempts == 1 and run.file.endswith("." + file_format)
