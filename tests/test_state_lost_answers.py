"""Integration state whose write was applied but whose answer was lost is read as our own write.

The app's Table calls pass through a fault-injecting proxy: `reset_after` lets Azurite apply a
request and resets the connection, so the SDK retries a PUT and meets its own write (412), and a
POST (a transaction) fails with its outcome unknown. Each test is such an answer once read as
"somebody else changed it", which dropped a job, refused an applied edit or created twice.
"""

from __future__ import annotations

import pytest

from exporter.context import Context
from exporter.jobs import schedule
from exporter.local.faultproxy import FaultProxy, Rule
from exporter.storage import INTEGRATIONS_TABLE
from tests.helpers import call, endpoint, integration_body, proxied_context, through

INTEGRATION_PUT = rf"{INTEGRATIONS_TABLE}\(PartitionKey"


@pytest.fixture
def proxied(settings, clock, table_proxy, azurite_connection) -> Context:
    """The app with its Table calls through the proxy (blobs and queues go straight to Azurite)."""
    connection = through(azurite_connection, "Table", table_proxy.url)
    return proxied_context(settings, clock, connection)


@pytest.fixture
def integration(ctx, customer_body) -> dict:
    answer = call(ctx, "integrations_create", customer_body, account="acme")
    assert answer.status == 201, answer.body
    return answer.body


def test_a_lease_whose_answer_is_lost_still_queues_the_job(ctx, clock, proxied, table_proxy, integration):
    clock.advance(hours=1, minutes=3)
    table_proxy.add(Rule("reset_after", method="POST", path=r"\$batch"))  # the leases' transaction

    scheduled = schedule(proxied)

    assert table_proxy.injected["reset_after"] == 1
    assert scheduled.queued == 1, "the lease landed: the job must be sent, not left for the lease to expire"
    assert len(list(ctx.storage.queue().peek_messages(max_messages=32))) == 1


@pytest.mark.parametrize("if_match", [False, True])
def test_an_edit_whose_answer_is_lost_answers_the_edit(ctx, proxied, table_proxy, integration, if_match):
    from exporter import api

    headers = {"If-Match": integration["etag"]} if if_match else {}
    table_proxy.add(Rule("reset_after", method="PUT", path=INTEGRATION_PUT))

    answer = api.handle(
        proxied,
        "integrations_update",
        api.ApiRequest(
            params={"account": "acme", "id": integration["id"]},
            body=b'{"frequency_hours": 6}',
            headers=headers,
        ),
    )

    assert table_proxy.injected["reset_after"] == 1
    assert answer.status == 200, answer.body
    assert answer.body["frequency_hours"] == 6
    assert call(ctx, "integrations_show", account="acme", id=integration["id"]).body["frequency_hours"] == 6


def test_a_create_whose_answer_is_lost_creates_once(ctx, proxied, table_proxy, customer_container, azurite_connection):
    table_proxy.add(Rule("reset_after", method="POST", path=r"\$batch"))

    answer = call(
        proxied,
        "integrations_create",
        integration_body(azurite_connection, customer_container.container_name),
        account="acme",
    )

    assert table_proxy.injected["reset_after"] == 1
    assert answer.status == 201, answer.body
    listed = call(ctx, "integrations_list", account="acme").body["integrations"]
    assert [i["id"] for i in listed] == [answer.body["id"]]


def test_a_delete_whose_answer_is_lost_answers_deleted(ctx, proxied, table_proxy, integration):
    table_proxy.add(Rule("reset_after", method="POST", path=r"\$batch"))

    answer = call(proxied, "integrations_delete", account="acme", id=integration["id"])

    assert table_proxy.injected["reset_after"] == 1
    assert answer.status == 200, answer.body
    assert call(ctx, "integrations_show", account="acme", id=integration["id"]).status == 404


def test_a_job_message_whose_answer_is_lost_is_sent_again(ctx, clock, settings, integration, azurite_connection):
    """Sending twice is safe (a job is idempotent); sending never is a stuck integration until the lease ends."""
    queue_proxy = FaultProxy(endpoint(azurite_connection, "Queue")).start()
    try:
        app = proxied_context(settings, clock, through(azurite_connection, "Queue", queue_proxy.url))
        clock.advance(hours=1, minutes=3)
        queue_proxy.add(Rule("reset_before", method="POST", path=r"/messages"))

        scheduled = schedule(app)

        assert queue_proxy.injected["reset_before"] == 1
        assert scheduled.queued == 1
        assert len(list(ctx.storage.queue().peek_messages(max_messages=32))) >= 1
    finally:
        queue_proxy.stop()


def test_an_advance_whose_answer_is_lost_counts_the_window_as_delivered(ctx, clock, proxied, table_proxy, integration):
    from exporter.jobs import ExportJob, process_job

    clock.advance(hours=1, minutes=3)
    table_proxy.add(Rule("reset_after", method="PUT", path=INTEGRATION_PUT))  # the first write is the advance

    outcome = process_job(proxied, ExportJob("acme", integration["id"]).to_message())

    assert table_proxy.injected["reset_after"] == 1
    assert (outcome.exported, outcome.follow_up) == (1, False)
    assert (
        call(ctx, "integrations_show", account="acme", id=integration["id"]).body["last_success_end"]
        == "2026-11-28T11:00:00.000Z"
    )


def test_a_follow_up_lease_whose_answer_is_lost_still_sends_the_follow_up(
    settings, ctx, clock, table_proxy, integration, azurite_connection
):
    from exporter.jobs import ExportJob, process_job

    connection = through(azurite_connection, "Table", table_proxy.url)
    one_window = proxied_context(settings, clock, connection, max_windows_per_run=1)
    clock.advance(hours=2, minutes=3)
    puts = []

    def first_put(method, path, headers):  # the advance, which carries the lease on for the follow-up
        puts.append(path)
        return len(puts) == 1

    table_proxy.add(Rule("reset_after", method="PUT", path=INTEGRATION_PUT, when=first_put))

    outcome = process_job(one_window, ExportJob("acme", integration["id"]).to_message())

    assert table_proxy.injected["reset_after"] == 1
    assert (outcome.exported, outcome.follow_up) == (1, True)
    assert len(list(ctx.storage.queue().peek_messages(max_messages=32))) == 1, "the follow-up was sent"
    assert ctx.repo.get("acme", integration["id"]).queued_until is not None
