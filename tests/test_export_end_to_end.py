"""End to end on Azurite: upsert, create, tick, and the exact CSV file with its name, header and rows."""

import csv
import io
from datetime import timedelta

from exporter.local.host import tick
from exporter.ucd.reader import WindowReader
from tests.helpers import T0, call


def _rows(container, name):
    text = container.download_blob(name).readall().decode()
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_upsert_create_tick_delivers_the_named_file_with_the_right_rows(ctx, customer_body, clock, customer_container):
    created = call(ctx, "integrations_create", customer_body, account="acme")
    assert created.status == 201, created.body
    iid = created.body["id"]

    clock.advance(minutes=10)
    body = {
        "users": [
            {
                "user_id": "u1",
                "attributes": {"email": "a@example.com"},
                "events": [
                    {
                        "event_name": "purchase",
                        "timestamp": "2026-11-25T08:00:00Z",
                        "event_params": {"price": 9.5, "currency": "EUR", "sku": "x"},
                    },
                    {"event_name": "page_view", "timestamp": "2026-11-28T10:09:00Z"},
                ],
            },
            {
                "user_id": "anon-7",
                "events": [
                    {
                        "event_name": "email_open",
                        "timestamp": "2026-11-28T10:09:30Z",
                        "event_params": {"campaign": "c1"},
                    }
                ],
            },
        ]
    }
    assert call(ctx, "ucd_upsert", body, account="acme").body == {
        "received_events": 3,
        "stored_events": 3,
        "duplicate_events": 0,
    }

    clock.set(T0 + timedelta(hours=1, seconds=119))
    assert tick(ctx)["worker"]["windows_exported"] == 0, "a window is not due before end + settle"
    clock.set(T0 + timedelta(hours=1, seconds=120))
    assert tick(ctx)["worker"]["windows_exported"] == 1

    start, end = int(T0.timestamp()), int(T0.timestamp()) + 3600
    name = f"insider/acme_events_{iid}_{start}_{end}.csv"
    assert [b.name for b in customer_container.list_blobs()] == [name]
    rows = _rows(customer_container, name)
    assert rows[0] == ["event_id", "user_id", "event_name", "timestamp", "price", "currency", "attr_email"]
    by_user = {r[1]: r for r in rows[1:]}
    assert set(by_user) == {"u1", "anon-7"}, "page_view is not selected; anonymous users are exported"
    assert by_user["u1"][2:] == ["purchase", "2026-11-25T08:00:00.000Z", "9.5", "EUR", "a@example.com"]
    assert by_user["anon-7"][2:] == ["email_open", "2026-11-28T10:09:30.000Z", "", "", ""]
    assert len(by_user["u1"][0]) == 32

    show = call(ctx, "integrations_show", account="acme", id=iid).body
    assert show["last_success_end"] == "2026-11-28T11:00:00.000Z"


def test_each_window_is_listed_once_for_the_split_decision_and_the_read(
    ctx, customer_body, clock, customer_container, monkeypatch
):
    iid = call(ctx, "integrations_create", customer_body, account="acme").body["id"]
    event = {"event_name": "purchase", "timestamp": "2026-11-28T10:09:00Z", "event_params": {"price": 1}}
    for minutes in (10, 70):  # one stored event in each of the first two windows
        clock.set(T0 + timedelta(minutes=minutes))
        call(ctx, "ucd_upsert", {"users": [{"user_id": f"u{minutes}", "events": [event]}]}, account="acme")
    listed = []
    real = WindowReader._iter_segments
    monkeypatch.setattr(WindowReader, "_iter_segments", lambda self, *a: listed.append(a) or real(self, *a))

    clock.set(T0 + timedelta(hours=2, seconds=120))
    assert tick(ctx)["worker"]["windows_exported"] == 2

    assert len(listed) == 2, "one listing per window"
    assert len({b.name for b in customer_container.list_blobs() if iid in b.name}) == 2


def test_a_small_window_s_first_attempt_reads_its_run_record_once_and_records_no_progress(
    ctx, customer_body, clock, customer_container, monkeypatch
):
    """Each call to a table is a round trip on the export's path: a one-block file needs four to the run table,
    and the integration is written once (the advance; the scheduler leases the due entry, not the record)."""
    iid = call(ctx, "integrations_create", customer_body, account="acme").body["id"]
    event = {"event_name": "purchase", "timestamp": "2026-11-28T10:09:00Z", "event_params": {"price": 1}}
    clock.set(T0 + timedelta(minutes=10))
    call(ctx, "ucd_upsert", {"users": [{"user_id": "u1", "events": [event]}]}, account="acme")
    calls: list[tuple[str, str]] = []
    table = ctx.runs.table
    for name in ("get_entity", "create_entity", "update_entity", "upsert_entity", "delete_entity", "query_entities"):
        real = getattr(table, name)

        def spy(*args, _name=name, _real=real, **kwargs):
            first = args[0] if args else kwargs.get("entity", kwargs.get("partition_key", ""))
            calls.append((_name, first["PartitionKey"] if isinstance(first, dict) else str(first)))
            return _real(*args, **kwargs)

        monkeypatch.setattr(table, name, spy)

    writes: list = []
    real_replace = ctx.repo.replace
    monkeypatch.setattr(
        ctx.repo, "replace", lambda i, *a, **k: writes.append(i.queued_until) or real_replace(i, *a, **k)
    )

    clock.set(T0 + timedelta(hours=1, seconds=120))
    assert tick(ctx)["worker"]["windows_exported"] == 1

    assert writes == [None], "one integration write: the advance (the scheduler's lease is on its due entry)"
    assert ctx.repo.get("acme", iid).queued_until is None
    assert [c for c in calls if c[1].endswith("~progress")] == [], "a file of one block records no progress"
    assert sorted(name for name, _ in calls) == ["get_entity", "get_entity", "upsert_entity", "upsert_entity"], (
        "the run record read once, the split plan read; the run record written before the export and after it"
    )
