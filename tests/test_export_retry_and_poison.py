"""Failures are retried by redelivery and recorded as what they are: a transient fault never flips the
status, a bug is an internal error, not a retry, and a configuration error names the setting. A job
failing on every delivery is poisoned with its cause in the run history, and scheduled again.

Destination faults run in every destination type (`kit`). The failures injected before any destination
is touched (a UCD read that fails, a secret that cannot be decrypted) run against Azure only (`azure_kit`):
the destination type plays no part in them."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from azure.core.exceptions import ServiceResponseError

from exporter.context import Context
from exporter.errors import ConfigurationError, InternalError, TransientError
from exporter.integrations.model import Status
from exporter.jobs import ExportJob, record_poison, schedule
from exporter.local.host import drain
from exporter.runs import RunStatus
from exporter.secrets import new_key
from exporter.windows import Window
from tests.destination_helpers import behind
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once, deliver_one, flaky, queued_messages
from tests.helpers import call

UNDECRYPTABLE = "configuration error: setting EXPORT_SECRET_KEY cannot decrypt a stored secret (was the key rotated?)"
FIRST = Window(ACT, ACT + H)


def test_transient_destination_failures_are_retried_by_redelivery_and_never_flip_the_status(
    ctx, clock, kit, monkeypatch
):
    iid = behind(ctx, clock, kit, 2)
    state = flaky(ctx, monkeypatch, failures=2)
    schedule(ctx)

    with pytest.raises(TransientError):
        deliver_one(ctx)
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.attempts) == (RunStatus.RETRYING, 1)
    assert "unavailable" in record.error
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.ACTIVE and integration.last_success_end is None
    assert kit.names() == [], "nothing is visible before the commit"

    worked = drain(ctx)
    assert worked["failed_deliveries"] == 1 and worked["jobs"] == 1 and worked["poisoned"] == 0
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.attempts, record.error) == (RunStatus.EXPORTED, 3, "")
    assert state["failures"] == 0
    assert_exactly_once(ctx, kit, iid)
    assert ctx.repo.get(ACCOUNT, iid).last_error is None


def test_a_job_failing_on_every_delivery_is_poisoned_then_rescheduled(ctx, settings, clock, kit, monkeypatch):
    iid = behind(ctx, clock, kit, 2)
    state = flaky(ctx, monkeypatch, failures=6)
    assert schedule(ctx).queued == 1

    worked = drain(ctx)
    assert worked == {"jobs": 0, "failed_deliveries": 5, "poisoned": 1, "windows_exported": 0}
    assert len(state["calls"]) == 5, "the 6th delivery goes to the poison queue without running"
    assert len(queued_messages(ctx, settings.poison_queue_name)) == 1
    assert queued_messages(ctx) == []
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.attempts) == (RunStatus.POISONED, 5)
    assert "gave up after 5 deliveries" in record.error
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.ACTIVE, "a transient failure never flips the status"
    assert integration.queued_until is None and integration.last_success_end is None
    assert "poison" in integration.last_error
    assert call(ctx, "integrations_runs", account=ACCOUNT, id=iid).body["runs"][0]["status"] == RunStatus.POISONED

    clock.advance(minutes=1)
    assert schedule(ctx).queued == 1, "the next schedule queues it again"
    worked = drain(ctx)  # one more failure (the 6th), then the destination has recovered
    assert worked["jobs"] == 1 and worked["failed_deliveries"] == 1 and worked["windows_exported"] == 2
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.attempts) == (RunStatus.EXPORTED, 7)
    assert_exactly_once(ctx, kit, iid)
    assert ctx.repo.get(ACCOUNT, iid).last_error is None


def test_recording_a_poisoned_job_answers_in_json(ctx, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 1)
    assert record_poison(ctx, ExportJob(ACCOUNT, iid).to_message()).to_json() == {
        "recorded": True,
        "integration_id": iid,
    }
    assert ctx.runs.get(ACCOUNT, iid, FIRST.start_unix).status == RunStatus.POISONED
    assert record_poison(ctx, "not a job").to_json() == {"recorded": False}
    assert record_poison(ctx, ExportJob(ACCOUNT, "0" * 12).to_message()).to_json() == {"recorded": False}


# ------------------------------------------------------------------ a bug is not a transient fault


@pytest.mark.parametrize(
    "failure, raised, status, error, logged",
    [
        (
            KeyError("event_id"),
            InternalError,
            RunStatus.FAILED,
            "internal error (KeyError)",
            "bug: unexpected KeyError",
        ),
        (
            ServiceResponseError("connection reset"),
            TransientError,
            RunStatus.RETRYING,
            "internal storage failure while exporting (ServiceResponseError)",
            "will retry",
        ),
    ],
)
def test_an_unexpected_exception_is_recorded_as_a_bug_and_a_storage_fault_as_transient(
    ctx, clock, azure_kit, monkeypatch, caplog, failure, raised, status, error, logged
):
    iid = behind(ctx, clock, azure_kit, 1)
    schedule(ctx)

    def failing_read(*args, **kwargs):
        raise failure

    monkeypatch.setattr(ctx.ucd, "read_window", failing_read)
    caplog.set_level(logging.INFO, logger="exporter")

    with pytest.raises(raised):
        deliver_one(ctx)
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.error, record.attempts) == (status, error, 1)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("exporter.jobs")]
    assert any(logged in line for line in lines), lines
    unlike = "will retry" if raised is InternalError else "bug"
    assert not any(unlike in line for line in lines), "a bug is not logged as a retry, nor a fault as a bug"
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.ACTIVE and integration.last_success_end is None

    monkeypatch.undo()  # fixed: the redelivery exports it
    assert drain(ctx)["windows_exported"] == 1
    assert_exactly_once(ctx, azure_kit, iid)


# ------------------------------------------------------------------ the poison record names the cause


def test_a_window_poisoned_by_an_undecryptable_secret_records_the_configuration_error(ctx, settings, clock, azure_kit):
    iid = behind(ctx, clock, azure_kit, 1)
    rotated = Context.create(dataclasses.replace(settings, secret_key=new_key()), clock)  # the key was rotated
    assert schedule(rotated).queued == 1

    with pytest.raises(ConfigurationError):
        deliver_one(rotated)  # fails decrypting the destination secret, before any export began
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.error, record.attempts) == (RunStatus.FAILED, UNDECRYPTABLE, 1)

    assert drain(rotated) == {"jobs": 0, "failed_deliveries": 4, "poisoned": 1, "windows_exported": 0}
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.attempts) == (RunStatus.POISONED, 5)
    assert record.error == f"gave up after 5 deliveries: {UNDECRYPTABLE}"

    clock.advance(minutes=1)
    assert schedule(ctx).queued == 1, "scheduled again; with the right key it delivers"
    drain(ctx)
    assert_exactly_once(ctx, azure_kit, iid)


def test_a_window_poisoned_by_a_bug_records_the_internal_error(ctx, clock, azure_kit, monkeypatch):
    iid = behind(ctx, clock, azure_kit, 1)
    schedule(ctx)
    monkeypatch.setattr(ctx.ucd, "read_window", lambda *a, **k: {}["no such column"])

    assert drain(ctx)["poisoned"] == 1
    record = ctx.runs.get(ACCOUNT, iid, FIRST.start_unix)
    assert (record.status, record.error) == (
        RunStatus.POISONED,
        "gave up after 5 deliveries: internal error (KeyError)",
    )
