"""Credentials expiring during a catch-up stop the integration at once; only verified new credentials
resume it, and the catch-up continues from last_success_end."""

from __future__ import annotations

import re

from exporter.clock import iso
from exporter.destinations import open_destination as real_open_destination
from exporter.destinations.azure_blob import AzureBlobDestination
from exporter.errors import CredentialError
from exporter.export.naming import window_path
from exporter.integrations.model import Status
from exporter.jobs import ExportJob, process_job
from exporter.local.host import tick
from exporter.runs import FAILED
from exporter.windows import Window
from tests.export_helpers import (
    ACCOUNT,
    ACT,
    WRONG_KEY,
    ExpiringDestination,
    H,
    assert_exactly_once,
    create,
    due_at,
    populate,
    tick_collecting,
)
from tests.helpers import call


def test_credentials_expiring_during_a_catch_up_stop_at_once_and_resume_after_an_update(
    ctx, clock, customer_container, azurite_connection, monkeypatch
):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(5), skip={3})
    clock.set(due_at(5))  # five windows behind
    wrong = re.sub(r"AccountKey=[^;]+", f"AccountKey={WRONG_KEY}", azurite_connection)
    state = {"expired": False, "good_commits": 2, "committed": [], "refused": []}

    def expiring(kind, connection, container, prefix):
        return ExpiringDestination(
            real_open_destination(kind, connection, container, prefix),
            AzureBlobDestination(wrong, container, prefix),
            state,
        )

    monkeypatch.setattr(ctx, "open_destination", expiring)

    results = []
    worked = tick_collecting(ctx, results)["worker"]
    assert worked["windows_exported"] == 2
    assert results[0].stopped == CredentialError.code
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.CREDENTIAL_ERROR
    assert "refused the credentials" in integration.last_error
    assert WRONG_KEY not in integration.last_error
    assert integration.last_success_end == ACT + 2 * H, "the lag remains: nothing after the refusal counts"
    assert integration.queued_until is None
    third = Window(ACT + 2 * H, ACT + 3 * H)
    assert set(state["refused"]) == {window_path("insider/", ACCOUNT, iid, third)}, "no further window was attempted"
    assert len(list(customer_container.list_blobs())) == 2
    record = ctx.runs.get(ACCOUNT, iid, third.start_unix)
    assert record.status == FAILED and "refused the credentials" in record.error

    # While stopped: the scheduler skips it, and a stale message delivers nothing.
    refused_before = len(state["refused"])
    clock.advance(hours=1)
    assert tick(ctx)["scheduler"]["queued"] == 0
    assert process_job(ctx, ExportJob(ACCOUNT, iid).to_message()).exported == 0
    assert len(state["refused"]) == refused_before and len(state["committed"]) == 2
    assert call(ctx, "integrations_resume", account=ACCOUNT, id=iid).status == 409, (
        "only verified credentials resume it"
    )

    # The customer updates the credentials (verified) → active → the next tick catches up oldest first.
    state["expired"] = False
    state["good_commits"] = 10**6
    updated = call(
        ctx, "integrations_update", {"destination": {"connection_string": azurite_connection}}, account=ACCOUNT, id=iid
    )
    assert updated.status == 200, updated.body
    assert updated.body["status"] == "active" and updated.body["last_error"] is None
    assert updated.body["last_success_end"] == iso(ACT + 2 * H)
    results.clear()
    worked = tick_collecting(ctx, results)["worker"]
    assert worked["windows_exported"] == 4  # windows 3, 4, 5 and the one that came due meanwhile
    starts = [w.window_start for r in results for w in r.windows]
    assert starts == [int((ACT + k * H).timestamp()) for k in range(2, 6)], "oldest first, from last_success_end"
    assert_exactly_once(ctx, customer_container, iid)
