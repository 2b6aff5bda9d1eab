"""The due index (exporter/integrations/due.py): the scheduler reads only what is due, and the index
never loses a due integration, whatever state change, crash or corruption comes between its writes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from azure.data.tables import UpdateMode

from exporter.context import Context
from exporter.integrations import due as due_module
from exporter.integrations.due import PARTITION, DueEntry, due_at, entry_key, is_later
from exporter.integrations.repo import IntegrationRepo
from exporter.jobs import schedule, sweep, sweep_unless_recent
from exporter.local.host import drain
from tests.destination_helpers import AzureKit, behind, create, integration_body
from tests.export_helpers import ACCOUNT, ACT, SETTLE, H, assert_exactly_once, deliver_one
from tests.export_helpers import due_at as due_after
from tests.helpers import call


def entries(ctx) -> list[DueEntry]:
    found = [e for e in ctx.repo.due.all() if isinstance(e, DueEntry)]
    return sorted(found, key=lambda e: e.key)


def assert_index_agrees(ctx) -> None:
    """One entry per integration with something to deliver, at its due time, and nothing else."""
    want = {}
    for integration in ctx.repo.all():
        when = due_at(integration, ctx.settings.settle_seconds)
        if when is not None:
            assert integration.due_key, integration
            assert integration.due_key.startswith(entry_key(when, integration.account, integration.id, 0)[:24])
            want[integration.due_key] = integration
    assert {e.key for e in entries(ctx)} == set(want)
    for entry in entries(ctx):
        assert entry.state.etag == want[entry.key].etag, "confirmed: the scheduler's fast path needs no read"


# ------------------------------------------------------------------ pure rules


def test_due_is_the_next_window_end_plus_settle_or_the_end_of_a_running_lease(ctx, clock, azure_kit):
    iid = create(ctx, clock, azure_kit)
    integration = ctx.repo.get(ACCOUNT, iid)
    assert due_at(integration, 120) == ACT + H + SETTLE
    later = ACT + 3 * H
    assert due_at(integration.with_changes(queued_until=later), 120) == later
    assert due_at(integration.with_changes(queued_until=ACT), 120) == ACT + H + SETTLE, "an expired lease"
    assert due_at(integration.with_changes(status="paused"), 120) is None
    assert due_at(integration.with_changes(status="credential_error"), 120) is None


def test_keys_sort_by_due_time_and_moves_know_their_direction():
    a = entry_key(ACT, "acme", "0" * 12, 7)
    b = entry_key(ACT + H, "a", "f" * 12, 1)
    assert a < b
    assert is_later(b, a) and not is_later(a, b)
    assert is_later("", a), "no longer due: the record first, then the entry goes"
    assert not is_later(a, ""), "due at all: the entry first"


# ------------------------------------------------------------------ every state change keeps it right


def test_every_state_change_keeps_one_entry_at_the_due_time(ctx, clock, azure_kit):
    iid = create(ctx, clock, azure_kit)
    assert_index_agrees(ctx)
    assert len(entries(ctx)) == 1 and entries(ctx)[0].due == ACT + H + SETTLE

    call(ctx, "integrations_pause", account=ACCOUNT, id=iid)
    assert_index_agrees(ctx)
    assert entries(ctx) == [], "paused: nothing for the scheduler"
    call(ctx, "integrations_resume", account=ACCOUNT, id=iid)
    assert_index_agrees(ctx)
    assert entries(ctx)[0].due == ACT + H + SETTLE

    changed = call(ctx, "integrations_update", {"frequency_hours": 4}, account=ACCOUNT, id=iid)
    assert changed.status == 200, changed.body
    assert_index_agrees(ctx)
    assert entries(ctx)[0].due == ACT + 4 * H + SETTLE

    clock.set(ACT + 4 * H + SETTLE)
    assert schedule(ctx).integrations == [iid]
    assert_index_agrees(ctx)
    assert entries(ctx)[0].leased_until == clock.now() + timedelta(seconds=ctx.settings.lease_seconds), "leased"
    drain(ctx)
    assert_index_agrees(ctx)
    assert entries(ctx)[0].due == ACT + 8 * H + SETTLE, "delivered: the next window"

    call(ctx, "integrations_delete", account=ACCOUNT, id=iid)
    assert entries(ctx) == []


def test_a_credential_stop_leaves_the_index_and_the_fix_brings_it_back(ctx, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 2)
    integration = ctx.repo.get(ACCOUNT, iid)
    ctx.repo.replace(integration.with_changes(status="credential_error", last_error="the key was rotated"))
    assert entries(ctx) == []
    assert schedule(ctx).queued == 0
    fixed = call(ctx, "integrations_update", {"destination": azure_kit.credentials_update()}, account=ACCOUNT, id=iid)
    assert fixed.status == 200, fixed.body
    assert_index_agrees(ctx)
    assert schedule(ctx).integrations == [iid], "catch-up: due at once"
    drain(ctx)
    assert_exactly_once(ctx, azure_kit, iid)


def test_a_catch_up_holds_its_entry_at_the_lease_until_the_last_window(settings, clock, azure_kit):
    ctx = Context.create(dataclasses.replace(settings, max_windows_per_run=2), clock)
    iid = behind(ctx, clock, azure_kit, 5)
    assert schedule(ctx).queued == 1
    drain(ctx)
    assert_index_agrees(ctx)
    assert entries(ctx)[0].due == due_after(6), "up to date: the next window's due time"
    assert_exactly_once(ctx, azure_kit, iid)


# ------------------------------------------------------------------ the scheduler reads only what is due


def test_the_scheduler_reads_the_due_entries_not_the_integrations(ctx, clock, azure_kit, monkeypatch):
    due_id = behind(ctx, clock, azure_kit, 1)
    monkeypatch.setattr(IntegrationRepo, "all", lambda self: pytest.fail("a tick must not scan integrations"))
    monkeypatch.setattr(IntegrationRepo, "list", lambda self, account: pytest.fail("nor list an account's"))
    assert schedule(ctx).integrations == [due_id]


def test_the_ticks_narrow_query_reads_each_entry_as_the_whole_entity_says(ctx, monkeypatch):
    """The tick asks only for the columns it reads: every one of them comes back, nothing else."""
    index = ctx.repo.due
    key = entry_key(ACT + H + SETTLE, ACCOUNT, "a" * 12, 3)
    full = {
        "PartitionKey": PARTITION,
        "RowKey": key,
        "etag": "W/\"datetime'2026-01-01T00%3A00%3A00Z'\"",
        "activated_at": "2026-01-01T00:00:00Z",
        "last_success_end": "2026-01-01T01:00:00Z",
        "frequency_hours": 4,
        "leased_until": "2026-01-01T05:10:00Z",
        "lease_token": "f" * 32,
        "padding": "x" * 4000,  # a column the tick never reads
    }
    index.table.upsert_entity(full)
    index.table.upsert_entity({**full, "RowKey": entry_key(ACT, ACCOUNT, "b" * 12, 1), "leased_until": ""})
    stored = [DueEntry.from_entity(index.table.get_entity(PARTITION, k)) for k in sorted(e.key for e in entries(ctx))]
    (read, broken), raw = index.due_by(ACT + 10 * H), list(index.table.query_entities("PartitionKey eq 'due'"))
    assert broken == [] and len(raw) == 2
    assert read == stored, "every field a tick reads comes back"
    assert read[1].leased_until is not None and read[1].state.last_success_end is not None, "a full entry"
    seen: list = []
    real = index.table.query_entities

    def spy(*args, **kwargs):
        found = list(real(*args, **kwargs))
        seen.extend(found)
        return iter(found)

    monkeypatch.setattr(index.table, "query_entities", spy)
    index.due_by(ACT + 10 * H)
    assert seen and all("padding" not in e and "lease_token" not in e for e in seen), "only what the tick reads"


# ------------------------------------------------------------------ crashes between the two writes


def test_killed_after_the_record_before_the_entry_moves_the_window_is_delivered_once(
    ctx, clock, azure_kit, monkeypatch
):
    """Due later (an advance): the record is written first; the leased entry left behind is repaired
    when its lease runs out, and the next window is still delivered once."""
    iid = behind(ctx, clock, azure_kit, 1)
    assert schedule(ctx).integrations == [iid]

    def killed(self, moves):
        raise SystemExit("killed between the two writes")

    monkeypatch.setattr(due_module.DueIndex, "apply", killed)
    with pytest.raises(SystemExit):
        deliver_one(ctx)
    monkeypatch.undo()
    [stale] = entries(ctx)
    assert stale.key != ctx.repo.get(ACCOUNT, iid).due_key, "the record moved on, its entry did not"
    assert drain(ctx)["jobs"] == 1, "the message comes back; the window is delivered already"

    clock.set(stale.leased_until)
    again = schedule(ctx)
    assert (again.queued, again.repaired) == (0, 1), "checked against the record: nothing due, entry put right"
    assert_index_agrees(ctx)
    clock.set(due_after(2))
    assert schedule(ctx).integrations == [iid]
    drain(ctx)
    assert len(assert_exactly_once(ctx, azure_kit, iid)) == 2


def test_killed_after_a_new_entry_before_the_record_nothing_is_queued_for_a_paused_integration(
    ctx, clock, azure_kit, monkeypatch
):
    """Due earlier (a resume): the entry is written first; if the record never follows, it is dropped."""
    iid = behind(ctx, clock, azure_kit, 1)
    call(ctx, "integrations_pause", account=ACCOUNT, id=iid)

    def killed(*args, **kwargs):
        raise SystemExit("killed between the two writes")

    monkeypatch.setattr(ctx.repo.table, "update_entity", killed)
    with pytest.raises(SystemExit):
        call(ctx, "integrations_resume", account=ACCOUNT, id=iid)
    monkeypatch.undo()
    assert len(entries(ctx)) == 1, "the new entry, for a state never written"
    outcome = schedule(ctx)
    assert (outcome.queued, outcome.repaired) == (0, 1)
    assert entries(ctx) == [] and ctx.repo.get(ACCOUNT, iid).status.value == "paused"


def test_a_lost_entry_is_restored_by_the_sweep_and_the_window_delivered_once(ctx, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 2)
    ctx.repo.due.remove(entries(ctx)[0].key)
    assert schedule(ctx).queued == 0, "lost: the scheduler cannot see it"
    outcome = sweep(ctx)
    assert (outcome.missing, outcome.stale) == (1, 0)
    assert_index_agrees(ctx)
    assert schedule(ctx).integrations == [iid]
    drain(ctx)
    assert_exactly_once(ctx, azure_kit, iid)
    assert sweep(ctx).repaired == 0, "nothing left to repair"


def test_the_sweep_names_each_late_integration_in_the_log(ctx, clock, azure_kit, caplog):
    iid = behind(ctx, clock, azure_kit, 4)  # four windows behind: late
    with caplog.at_level("WARNING", logger="exporter.jobs.sweep"):
        assert sweep(ctx).late == 1
    assert f"integration {iid}" in caplog.text and "account acme" in caplog.text
    schedule(ctx)
    drain(ctx)
    caplog.clear()
    assert sweep(ctx).late == 0 and "late" not in caplog.text


def test_integrations_stored_before_the_index_existed_are_indexed_by_the_sweep(ctx, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 1)
    entity = ctx.repo.table.get_entity(ACCOUNT, iid)
    entity["due_key"], entity["revision"] = "", 0
    ctx.repo.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    ctx.repo.due.remove(entries(ctx)[0].key)
    assert sweep(ctx).rekeyed == 1
    assert_index_agrees(ctx)
    assert schedule(ctx).integrations == [iid]


# ------------------------------------------------------------------ corrupted entries


@pytest.mark.parametrize(
    "damage",
    [
        {"etag": "W/\"datetime'2001-01-01'\""},  # an ETag the record never had: harmless, never trusted
        {"activated_at": "not a time", "frequency_hours": "x"},
    ],
    ids=["wrong-etag", "garbage-fields"],
)
def test_a_corrupted_entry_is_repaired_and_the_window_delivered_once(ctx, clock, azure_kit, damage):
    iid = behind(ctx, clock, azure_kit, 1)
    [entry] = entries(ctx)
    entity = dict(ctx.repo.due.table.get_entity(PARTITION, entry.key))
    ctx.repo.due.table.upsert_entity({**entity, **damage}, mode=UpdateMode.REPLACE)
    assert schedule(ctx).integrations == [iid]
    drain(ctx)
    assert_index_agrees(ctx)
    assert_exactly_once(ctx, azure_kit, iid)


def test_an_entry_that_is_not_one_is_dropped_and_the_sweep_restores_the_real_one(ctx, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 1)
    [entry] = entries(ctx)
    ctx.repo.due.remove(entry.key)
    ctx.repo.due.table.upsert_entity({"PartitionKey": PARTITION, "RowKey": "2000-01-01|garbage"})
    assert schedule(ctx).repaired == 1
    assert list(ctx.repo.due.all()) == []
    sweep(ctx)
    assert schedule(ctx).integrations == [iid]
    drain(ctx)
    assert_exactly_once(ctx, azure_kit, iid)


# ------------------------------------------------------------------ fairness between accounts


def test_a_long_catch_up_of_one_account_delays_another_accounts_window_by_at_most_one_job(
    settings, clock, azure_kit, blob_service, tag
):
    """Follow-ups re-enter the queue behind the jobs already there: another account's due window waits
    for one job of the catch-up, never for the whole of it."""
    ctx = Context.create(dataclasses.replace(settings, max_windows_per_run=3), clock)
    long_id = behind(ctx, clock, azure_kit, 30)  # 30 windows behind: 10 jobs
    theirs = AzureKit(azure_kit.connection, blob_service.create_container(f"globex-{tag}"))
    other = call(ctx, "integrations_create", integration_body(theirs.body()), account="globex")
    assert other.status == 201, other.body
    clock.advance(hours=1, minutes=5)  # the other account's first window is due too

    scheduled = schedule(ctx)
    assert scheduled.integrations == [long_id, other.body["id"]], "oldest due first"
    order: list[str] = []
    drain(ctx, on_result=lambda result: order.append(result.windows[0].account if result.windows else "-"))
    assert order.index("globex") <= 1, f"globex waited behind {order.index('globex')} jobs of acme: {order}"
    assert order.count("acme") >= 10, order
    assert_exactly_once(ctx, azure_kit, long_id)


# ------------------------------------------------------------------ a big tick fans out


def test_a_tick_with_many_due_sends_their_jobs_in_fan_out_messages_and_each_is_delivered_once(
    ctx, clock, azure_kit, blob_service, tag, monkeypatch
):
    from exporter.jobs import scheduler

    monkeypatch.setattr(scheduler, "FAN_OUT_AT", 3)
    monkeypatch.setattr(scheduler, "FAN_OUT_SIZE", 2)
    monkeypatch.setattr(due_module, "MAX_BATCH", 2)  # 3 leases in 2 transactions, sent at once
    first = behind(ctx, clock, azure_kit, 1)
    others = []
    for n in range(2):
        kit = AzureKit(azure_kit.connection, blob_service.create_container(f"fan{n}-{tag}"))
        created = call(ctx, "integrations_create", integration_body(kit.body()), account=f"fan{n}")
        assert created.status == 201, created.body
        others.append((kit, created.body["id"]))
    clock.advance(hours=1, minutes=5)

    outcome = schedule(ctx)
    assert outcome.queued == 3
    messages = [m.content for m in ctx.storage.queue().peek_messages(max_messages=32)]
    assert len(messages) == 2 and all("fan_out" in m for m in messages), "3 jobs, 2 to a message"
    drained = drain(ctx)
    assert drained["jobs"] == 5, "2 fan-outs, then the 3 jobs they sent on"
    assert len(assert_exactly_once(ctx, azure_kit, first)) == 2
    for kit, iid in others:
        assert len(kit.names()) == 1, f"{iid}: its one due window, once"
    assert schedule(ctx).queued == 0


# ------------------------------------------------------------------ the timer's sweep at an instance's start


def test_the_timers_sweep_is_skipped_within_half_an_hour_of_the_last_and_runs_after(ctx, clock, azure_kit):
    from exporter.integrations.due import SWEEP_PARTITION, SWEEP_ROW

    iid = behind(ctx, clock, azure_kit, 1)
    ctx.repo.due.remove(entries(ctx)[0].key)  # lost: only a sweep that runs finds it
    ctx.repo.due.table.delete_entity(SWEEP_PARTITION, SWEEP_ROW)  # no sweep has ever finished here
    assert sweep_unless_recent(ctx).missing == 1, "the first start builds the index"
    ctx.repo.due.remove(entries(ctx)[0].key)
    clock.advance(minutes=29)
    assert sweep_unless_recent(ctx).skipped, "another instance's start, minutes later: one point read"
    assert schedule(ctx).queued == 0
    clock.advance(minutes=2)
    assert sweep_unless_recent(ctx).missing == 1, "half an hour on, the timer sweeps again"
    assert schedule(ctx).integrations == [iid]
    ctx.repo.due.table.upsert_entity({"PartitionKey": SWEEP_PARTITION, "RowKey": SWEEP_ROW, "finished_at": "garbage"})
    assert not sweep_unless_recent(ctx).skipped, "a marker that is not a time never stops a sweep"
