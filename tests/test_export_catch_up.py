"""Catch-up: after a pause one file per missed window, oldest first; a long backlog is bounded per
invocation and continues through follow-up messages. Which windows are due does not depend on the
destination type: Azure only (`azure_kit`)."""

from __future__ import annotations

import dataclasses

from exporter.context import Context
from exporter.jobs import ExportJob, process_job
from exporter.local.host import tick
from tests.destination_helpers import behind
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once, due_at, populate, tick_collecting
from tests.helpers import call

# ------------------------------------------------------------------ pause, then resume


def test_pause_for_five_hours_then_resume_catches_up_one_file_per_window(ctx, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 1)
    assert tick(ctx)["worker"]["windows_exported"] == 1
    assert call(ctx, "integrations_pause", account=ACCOUNT, id=iid).body["status"] == "paused"

    populate(ctx, clock, range(1, 6), skip={4})  # events keep arriving while paused
    for hours in range(2, 7):
        clock.set(due_at(hours))
        assert tick(ctx)["scheduler"]["queued"] == 0, "paused integrations are skipped"
    assert process_job(ctx, ExportJob(ACCOUNT, iid).to_message()).exported == 0, "a stale message delivers nothing"
    assert len(azure_kit.names()) == 1

    assert call(ctx, "integrations_resume", account=ACCOUNT, id=iid).body["status"] == "active"
    results = []
    assert tick_collecting(ctx, results)["worker"]["windows_exported"] == 5
    assert [w.window_start for w in results[0].windows] == [int((ACT + k * H).timestamp()) for k in range(1, 6)]
    contents = assert_exactly_once(ctx, azure_kit, iid)
    assert len(contents) == 6
    assert ctx.repo.get(ACCOUNT, iid).activated_at == ACT, "resuming keeps the original anchor"


# ------------------------------------------------------------------ bounded catch-up through follow-ups


def test_a_long_catch_up_is_bounded_per_invocation_and_continues_through_follow_up_messages(settings, clock, azure_kit):
    ctx = Context.create(dataclasses.replace(settings, max_windows_per_run=2), clock)
    iid = behind(ctx, clock, azure_kit, 7, skip={0, 5})
    results = []
    worked = tick_collecting(ctx, results)["worker"]
    assert [r.exported for r in results] == [2, 2, 2, 1]
    assert [r.follow_up for r in results] == [True, True, True, False]
    assert results[-1].to_json() == {
        "exported": 1,
        "windows": [results[-1].windows[0].to_json()],
        "follow_up": False,
        "stopped": None,
        "reason": None,
    }, "the JSON form keeps every key"
    assert worked == {"jobs": 4, "failed_deliveries": 0, "poisoned": 0, "windows_exported": 7}
    starts = [w.window_start for r in results for w in r.windows]
    assert starts == [int((ACT + k * H).timestamp()) for k in range(7)]
    contents = assert_exactly_once(ctx, azure_kit, iid)
    assert len(contents) == 7
    assert ctx.repo.get(ACCOUNT, iid).queued_until is None
