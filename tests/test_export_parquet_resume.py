"""Resumable Parquet windows (docs/architecture.md, "Windows of any size"), once per destination type.

A Parquet window of many blocks (each ends where a row group does) is exported through the worker with
a time budget that runs out after every block, so each invocation stages one block; a worker killed
after k staged blocks is redelivered and continues. The file must be byte-identical to an export in one
go, no recorded block is uploaded again, and the file is a valid Parquet file that pyarrow and DuckDB
read with exactly the rows, types and order of a whole-file pyarrow writer's file, in row groups of
ROW_GROUP_ROWS rows, each with its statistics and readable alone. The footer's pieces (block notes in
the service's staging container) are gone after the window's advance; a Parquet window is never split.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.clock import to_unix
from exporter.export import runner
from exporter.export.formats import fix_types, parquet
from exporter.export.formats.parquet import typed_batch
from exporter.export.formats.types import column_types
from exporter.export.naming import manifest_path
from exporter.export.plan import Selection, column_plan
from exporter.export.progress import ProgressRepo, notes_prefix
from exporter.export.resume import splittable
from exporter.jobs import schedule
from exporter.jobs.split import SplitRepo
from exporter.windows import Window
from tests import resume_helpers as resume
from tests.destination_helpers import (
    assert_bytes_match_a_clean_export,
    create_with_large_window,
    destination_from_body,
    make_kit,
    part_minimum,
)
from tests.export_helpers import ACCOUNT, ACT, H, deliver_one, due_at, read_ids

MiB = 1024 * 1024
GROUP_ROWS = 8_192  # row groups of about 280 KiB of the benchmark's selection
SEGMENT_ROWS = 60_000  # three segments: 22 row groups, about 6 MiB
S3_SEGMENT_ROWS = 250_000  # at AWS's minimum part size (5 MiB) three segments make three blocks


def a_large_parquet_window(ctx, clock, kit, monkeypatch) -> str:
    """An integration whose first window's Parquet file holds many blocks (three at AWS's minimum part size), due
    now, its job queued."""
    aws_parts = part_minimum(kit) > 512 * 1024
    iid = create_with_large_window(ctx, clock, kit, S3_SEGMENT_ROWS if aws_parts else SEGMENT_ROWS, format="parquet")
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", GROUP_ROWS)
    monkeypatch.setattr(runner, "BLOCK_BYTES", 5 * MiB if aws_parts else 512 * 1024)
    return iid


def the_file(ctx, kit, iid) -> bytes:
    """The window's one file, committed, its run record matching it (S3: no multipart upload left behind)."""
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    data = kit.read(run.file)
    assert [n for n in kit.names() if n.endswith(".parquet")] == [run.file]
    assert run.bytes == len(data)
    pending_uploads = getattr(kit, "pending_uploads", None)  # an S3 kit
    assert pending_uploads is None or pending_uploads() == [], "every multipart upload completed or aborted"
    return data


def the_same_file_as_a_clean_export(ctx, kit, iid, scratch) -> bytes:
    """The window's one file, byte-identical to an export in one go into `scratch`."""
    data = the_file(ctx, kit, iid)
    assert_bytes_match_a_clean_export(ctx, iid, {(to_unix(ACT), to_unix(ACT + H)): data}, scratch)
    return data


def selection_of(ctx, iid) -> Selection:
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    return Selection.from_json(json.loads(run.selection))


def reference_table(ctx, selection: Selection, window: Window) -> pa.Table:
    """The window's rows as one pyarrow writer encodes the whole file (the encoder before row groups were
    encoded alone): the rows, types, order and Arrow schema the file must have."""
    selection = fix_types(selection, lambda: ctx.ucd.catalog(ACCOUNT))
    plan = column_plan(selection.events, selection.attributes)
    schema = column_types(plan, dict(selection.param_types or ())).arrow_schema()
    out = io.BytesIO()
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        read = ctx.ucd.read_window(
            ACCOUNT, window.start, window.end, event_names=plan.event_names, columns=plan.source_columns
        )
        for batch in read:
            writer.write_batch(typed_batch(plan.project(batch), schema))
    out.seek(0)
    return pq.read_table(out)


def csv_event_ids(ctx, iid, scratch) -> list[str]:
    """The event ids of the window's `csv` export, in its order."""
    selection = dataclasses.replace(selection_of(ctx, iid), format="csv", manifest=False)
    clean = destination_from_body(scratch.body("as-csv/"))
    window = Window(ACT, ACT + H)
    text = scratch.read(runner.export_window(ctx.ucd, ACCOUNT, iid, selection, window, clean).path).decode()
    return [row["event_id"] for row in csv.DictReader(io.StringIO(text, newline=""))]


def assert_a_valid_parquet_file(data: bytes, reference: pa.Table, tmp_path) -> None:
    """pyarrow and DuckDB read exactly the reference's rows, types and order; row groups of GROUP_ROWS with statistics."""
    table = pq.read_table(io.BytesIO(data))
    assert table.schema.equals(reference.schema, check_metadata=True), "the same Arrow schema (and its metadata)"
    assert table.equals(reference), "the same rows, values and order"
    file = pq.ParquetFile(io.BytesIO(data))
    meta = file.metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert sizes[:-1] == [GROUP_ROWS] * (len(sizes) - 1) and 0 < sizes[-1] <= GROUP_ROWS, sizes
    assert meta.num_rows == reference.num_rows
    ids = table.column("event_id")
    for g in range(meta.num_row_groups):
        group = file.read_row_group(g)
        assert group.equals(table.slice(g * GROUP_ROWS, sizes[g])), f"row group {g} read alone"
        stats = meta.row_group(g).column(0).statistics  # event_id
        assert stats is not None and stats.has_min_max
        mine = ids.slice(g * GROUP_ROWS, sizes[g]).to_pylist()
        assert (stats.min, stats.max) == (min(mine), max(mine)), f"row group {g}'s own statistics"
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "window.parquet"
    path.write_bytes(data)
    read = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").arrow()
    if isinstance(read, pa.RecordBatchReader):
        read = read.read_all()
    assert read.column("event_id").to_pylist() == ids.to_pylist(), "DuckDB reads the rows in their order"
    assert read.num_columns == table.num_columns and read.num_rows == table.num_rows


def assert_notes_gone(ctx, iid) -> None:
    prefix = notes_prefix(ACCOUNT, iid, to_unix(ACT))
    assert [b.name for b in ctx.storage.staging_container().list_blobs(name_starts_with=prefix)] == []


def notes_kept(ctx, iid) -> list[str]:
    prefix = notes_prefix(ACCOUNT, iid, to_unix(ACT))
    return [b.name[len(prefix) :] for b in ctx.storage.staging_container().list_blobs(name_starts_with=prefix)]


def test_a_parquet_window_taking_several_invocations_is_the_same_bytes_as_one(
    ctx, clock, kit, scratch_kit, monkeypatch, tmp_path
):
    iid = a_large_parquet_window(ctx, clock, kit, monkeypatch)
    seen, results = resume.a_block_an_invocation(ctx, clock, monkeypatch)

    least = 3 if part_minimum(kit) > 512 * 1024 else 5
    assert len(results) >= least, "the window took several invocations"
    assert [r.follow_up for r in results[:-1]] == [True] * (len(results) - 1)
    assert [r.exported for r in results] == [0] * (len(results) - 1) + [1]
    assert len(seen) >= least and set(seen.values()) == {1}, "every block staged exactly once"
    assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H
    data = the_same_file_as_a_clean_export(ctx, kit, iid, scratch_kit)
    reference = reference_table(ctx, selection_of(ctx, iid), Window(ACT, ACT + H))
    assert_a_valid_parquet_file(data, reference, tmp_path)
    assert reference.column("event_id").to_pylist() == csv_event_ids(ctx, iid, scratch_kit), "the CSV's rows"
    assert sorted(reference.column("event_id").to_pylist()) == sorted(
        read_ids(ctx, ACT, ACT + H, [e.name for e in selection_of(ctx, iid).events])
    )
    assert ProgressRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT)) is None
    assert_notes_gone(ctx, iid)


def kill_then_resume(ctx, monkeypatch, k: int | None, between=lambda: None) -> tuple[Counter, Counter]:
    """Deliver the job to a worker killed once block k is staged (None: before the commit), call `between`,
    then deliver it again: the blocks each delivery staged."""
    first: Counter = Counter()
    resume.staging(ctx, monkeypatch, first, kill_after=k, kill_at_commit=k is None)
    with pytest.raises(resume.Killed):
        deliver_one(ctx)
    between()
    second: Counter = Counter()
    resume.staging(ctx, monkeypatch, second)
    assert deliver_one(ctx).exported == 1
    return first, second


@pytest.mark.parametrize("k", [1])
def test_a_parquet_worker_killed_after_k_staged_blocks_restages_at_most_one(
    ctx, clock, kit, scratch_kit, monkeypatch, tmp_path, k
):
    iid = a_large_parquet_window(ctx, clock, kit, monkeypatch)

    def notes_of_the_recorded_blocks():
        assert notes_kept(ctx, iid)[:k] == [f"{b:06d}" for b in range(k)], "a note per recorded block"

    first, second = kill_then_resume(ctx, monkeypatch, k, notes_of_the_recorded_blocks)
    assert sorted(first) == list(range(k + 1))
    assert min(second) == k and set(first) & set(second) == {k}, "only block k is staged again"
    data = the_same_file_as_a_clean_export(ctx, kit, iid, scratch_kit)
    assert_a_valid_parquet_file(data, reference_table(ctx, selection_of(ctx, iid), Window(ACT, ACT + H)), tmp_path)
    assert_notes_gone(ctx, iid)


def test_a_parquet_worker_killed_deep_in_the_file_restages_one_block(ctx, clock, azure_kit, request, tag, monkeypatch):
    iid = a_large_parquet_window(ctx, clock, azure_kit, monkeypatch)
    first, second = kill_then_resume(ctx, monkeypatch, 5)
    assert min(second) == 5 and set(first) & set(second) == {5}, "only block 5 is staged again"
    the_same_file_as_a_clean_export(ctx, azure_kit, iid, make_kit(request, "azure_blob", tag + "s"))


def test_a_parquet_worker_killed_before_the_commit_stages_only_the_last_block_again(
    ctx, clock, azure_kit, request, tag, monkeypatch
):
    """The last block (with the footer) is not recorded: the next delivery stages it alone again, the same bytes."""
    iid = a_large_parquet_window(ctx, clock, azure_kit, monkeypatch)

    def all_but_the_last_recorded():
        recorded = ProgressRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT))
        assert recorded is not None and recorded.blocks >= 4, "every block but the last is recorded"
        kept = notes_kept(ctx, iid)[: recorded.blocks]
        assert kept == [f"{b:06d}" for b in range(recorded.blocks)], "each with its note"

    first, second = kill_then_resume(ctx, monkeypatch, None, all_but_the_last_recorded)
    assert len(first) >= 5 and sorted(second) == [max(first)], "only the last block is staged again"
    the_same_file_as_a_clean_export(ctx, azure_kit, iid, make_kit(request, "azure_blob", tag + "s"))


def test_a_parquet_window_whose_notes_are_gone_is_exported_again_from_its_start(
    ctx, clock, kit, scratch_kit, monkeypatch
):
    """The upload taken over again and written from its first block (S3 parts, a GCS session: same bytes)."""
    iid = a_large_parquet_window(ctx, clock, kit, monkeypatch)
    resume.staging(ctx, monkeypatch, Counter())
    resume.time_runs_out_after_every_block(ctx, clock, monkeypatch)
    assert deliver_one(ctx).follow_up and deliver_one(ctx).follow_up
    container = ctx.storage.staging_container()
    for name in notes_kept(ctx, iid):
        container.delete_blob(notes_prefix(ACCOUNT, iid, to_unix(ACT)) + name)  # what the lifecycle rule does

    again = resume.one_delivery_with_time_enough(ctx, monkeypatch)
    assert min(again) == 0, "started again from block 0"
    the_same_file_as_a_clean_export(ctx, kit, iid, scratch_kit)


def test_an_empty_parquet_window_is_a_valid_empty_file(ctx, clock, azure_kit, request, tag, monkeypatch, tmp_path):
    iid = a_large_parquet_window(ctx, clock, azure_kit, monkeypatch)
    empty = Window(ACT + 5 * H, ACT + 6 * H)  # after every stored event
    selection = selection_of_integration(ctx, iid)
    scratch = make_kit(request, "azure_blob", tag + "s")
    result = runner.export_window(ctx.ucd, ACCOUNT, iid, selection, empty, destination_from_body(scratch.body()))
    data = scratch.read(result.path)
    assert result.rows == 0 and result.bytes == len(data)
    reference = reference_table(ctx, selection, empty)
    table = pq.read_table(io.BytesIO(data))
    assert reference.num_rows == 0 and table.num_rows == 0
    assert table.schema.equals(reference.schema, check_metadata=True)
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 0
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "empty.parquet"
    path.write_bytes(data)
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall() == [(0,)]


def selection_of_integration(ctx, iid) -> Selection:
    return fix_types(ctx.repo.get(ACCOUNT, iid).selection, lambda: ctx.ucd.catalog(ACCOUNT))


@pytest.mark.parametrize(("file_format", "split"), [("csv", True), ("parquet", False)])
def test_a_parquet_window_is_never_split(ctx, clock, azure_kit, monkeypatch, file_format, split):
    """A window over the split threshold: a CSV file is split into parts; a Parquet file never is."""
    iid = create_with_large_window(ctx, clock, azure_kit, 5_000, format=file_format)
    total = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, ACT, ACT + H))
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=total // 3 + 1))
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    outcome = deliver_one(ctx)
    plan = SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT))
    assert (plan is not None) is split
    assert splittable(selection_of_integration(ctx, iid)) is split
    if not split:
        assert outcome.exported == 1 and ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + H


def test_a_parquet_file_with_a_manifest_over_several_invocations_has_the_manifest_of_one(
    ctx, clock, azure_kit, request, tag, monkeypatch
):
    """Its notes and its SHA-256's state continue together: the manifest describes the file, as in one go."""
    iid = create_with_large_window(ctx, clock, azure_kit, SEGMENT_ROWS, format="parquet", manifest=True)
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", GROUP_ROWS)
    monkeypatch.setattr(runner, "BLOCK_BYTES", 512 * 1024)
    seen, results = resume.a_block_an_invocation(ctx, clock, monkeypatch)

    assert len(results) >= 5 and results[-1].exported == 1, "the window took several invocations"
    run = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    data, manifest = azure_kit.read(run.file), json.loads(azure_kit.read(manifest_path(run.file)))
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() and manifest["bytes"] == len(data)
    scratch = make_kit(request, "azure_blob", tag + "s")
    assert_bytes_match_a_clean_export(ctx, iid, {(to_unix(ACT), to_unix(ACT + H)): data}, scratch)
    assert_notes_gone(ctx, iid)
