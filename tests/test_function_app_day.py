"""A simulated day through the function app's own handlers: HTTP upserts, the timer, the queue worker.

The handlers of function_app.py are called as the Functions host would call them (HttpRequest,
TimerRequest, QueueMessage with a dequeue count), on a context with a manual clock, against the real
queue on Azurite (Base64 messages, as the host reads them).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from datetime import timedelta

import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from exporter import triggers
from exporter.clock import iso
from exporter.local.host import json_request
from tests.app_functions import FUNCTIONS
from tests.helpers import T0, integration_body

HANDLERS = {name: fn.get_user_function() for name, fn in FUNCTIONS.items()}
ACCOUNT = "acme"
ACT = T0 + timedelta(minutes=17, seconds=23)
# Two timer runs per hour (each with an upsert before it): every hourly window has events, and the scheduler
# runs again between due windows; finer steps cost time and prove nothing more.
STEP = timedelta(minutes=30)
DAY = timedelta(hours=24)


@pytest.fixture
def app_ctx(ctx):
    triggers.use_context(ctx)
    yield ctx
    triggers.use_context(None)


def http(handler: str, method: str, url: str, route_params: dict, body=None) -> tuple[int, dict]:
    response = HANDLERS[handler](json_request(method, url, route_params, body))
    return response.status_code, json.loads(response.get_body())


def upsert(step: int) -> None:
    when = iso(T0 - timedelta(days=2) + timedelta(seconds=step))  # the events' own time is days ago
    body = {
        "users": [
            {
                "user_id": f"u{step % 5}",
                "attributes": {"email": f"u{step % 5}@example.com", "step": step},
                "events": [
                    {"event_name": "purchase", "timestamp": when, "event_params": {"price": step, "currency": "EUR"}},
                    {"event_name": "email_open", "timestamp": when, "event_params": {"campaign": f"c{step}"}},
                    {"event_name": "page_view", "timestamp": when},
                ],
            }
        ]
    }
    status, answer = http("ucd_upsert", "POST", f"/api/ucd/{ACCOUNT}/upsert", {"account": ACCOUNT}, body)
    assert status == 200, answer
    assert answer == {"received_events": 3, "stored_events": 3, "duplicate_events": 0}


def run_queue(ctx) -> int:
    """Receive from the real queue and call the export_worker handler, deleting each on success."""
    queue = ctx.storage.queue()
    handled = 0
    while True:
        messages = list(queue.receive_messages(max_messages=16, visibility_timeout=300))
        if not messages:
            return handled
        for message in messages:
            HANDLERS["export_worker"](
                QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=message.dequeue_count)
            )
            queue.delete_message(message)
            handled += 1


def files(container, prefix: str, integration_id: str) -> list[tuple[int, int, list[list[str]]]]:
    pattern = re.compile(re.escape(prefix) + rf"{ACCOUNT}_events_{integration_id}_(\d+)_(\d+)\.csv")
    found = []
    for blob in container.list_blobs(name_starts_with=prefix):
        match = pattern.fullmatch(blob.name)
        assert match, blob.name
        text = container.download_blob(blob.name).readall().decode()
        found.append((int(match[1]), int(match[2]), list(csv.reader(io.StringIO(text, newline="")))))
    return sorted(found)


def test_a_simulated_day_through_the_function_app_handlers(app_ctx, clock, customer_container, azurite_connection):
    ctx = app_ctx
    container = customer_container.container_name
    clock.set(ACT)
    created = {}
    for label, overrides in {
        "hourly": {"frequency_hours": 1},
        "six": {
            "frequency_hours": 6,
            "events": [{"name": "purchase", "params": ["price"]}],
            "attributes": [],
            "destination": {
                "type": "azure_blob",
                "connection_string": azurite_connection,
                "container": container,
                "prefix": "six/",
            },
        },
    }.items():
        body = integration_body(azurite_connection, container, **overrides)
        if label == "hourly":
            body["destination"]["prefix"] = "hourly/"
        status, answer = http(
            "integrations", "POST", f"/api/accounts/{ACCOUNT}/integrations", {"account": ACCOUNT}, body
        )
        assert status == 201, answer
        assert "AccountKey" not in json.dumps(answer).replace("AccountKey=***", "")
        created[label] = answer["id"]

    jobs_handled = 0
    step = 0
    while clock.now() < ACT + DAY + timedelta(minutes=15):
        step += 1
        clock.set(ACT + step * STEP)
        if clock.now() < ACT + DAY:
            upsert(step)
        assert HANDLERS["scheduler"](TimerRequest(past_due=False)) is None
        jobs_handled += run_queue(ctx)
    assert clock.now() >= ACT + DAY + timedelta(seconds=ctx.settings.settle_seconds)
    assert jobs_handled == 24 + 4, "one job per due window: the scheduler never queued a duplicate"

    # Files: 24 hourly, 4 six-hourly, contiguous from activation; every selected event exactly once.
    stored = {}
    for batch in ctx.ucd.read_window(ACCOUNT, ACT - timedelta(days=1), ACT + DAY):
        for event_id, name in zip(batch.column("event_id").to_pylist(), batch.column("event_name").to_pylist()):
            stored[event_id] = name
    assert Counter(stored.values()) == {"purchase": 47, "email_open": 47, "page_view": 47}  # an upsert a step
    expectations = {
        "hourly": (
            "hourly/",
            1,
            24,
            {"purchase", "email_open"},
            ["event_id", "user_id", "event_name", "timestamp", "price", "currency", "attr_email"],
        ),
        "six": ("six/", 6, 4, {"purchase"}, ["event_id", "user_id", "event_name", "timestamp", "price"]),
    }
    for label, (prefix, hours, count, selected, header) in expectations.items():
        iid = created[label]
        delivered = files(customer_container, prefix, iid)
        assert len(delivered) == count, label
        starts = [int((ACT + k * timedelta(hours=hours)).timestamp()) for k in range(count)]
        assert [f[0] for f in delivered] == starts
        assert [f[1] - f[0] for f in delivered] == [hours * 3600] * count
        exported = Counter()
        for _start, _end, rows in delivered:
            assert rows[0] == header
            assert rows[1:], f"{label}: every window has events"
            exported.update(r[0] for r in rows[1:])
            assert {r[2] for r in rows[1:]} <= selected
        assert set(exported.values()) == {1}, f"{label}: an event exported twice"
        assert set(exported) == {e for e, name in stored.items() if name in selected}, f"{label}: an event lost"

        status, shown = http(
            "integration", "GET", f"/api/accounts/{ACCOUNT}/integrations/{iid}", {"account": ACCOUNT, "id": iid}
        )
        assert status == 200 and shown["status"] == "active"
        assert shown["last_success_end"] == iso(ACT + DAY)
        status, runs = http(
            "integration_runs",
            "GET",
            f"/api/accounts/{ACCOUNT}/integrations/{iid}/runs",
            {"account": ACCOUNT, "id": iid},
        )
        assert status == 200
        assert len(runs["runs"]) == count
        assert {r["status"] for r in runs["runs"]} == {"exported"}
        assert sorted(r["window_start"] for r in runs["runs"]) == starts
        assert sum(r["rows"] for r in runs["runs"]) == len(exported)
        assert all(r["attempts"] == 1 for r in runs["runs"])
