"""Credentials expiring during a catch-up stop the integration at once; only verified new credentials
resume it, and the catch-up continues from last_success_end. In every destination type: the refusal
comes from the real server (a wrong account key, a wrong secret key, a refused service-account key)."""

from __future__ import annotations

from exporter.clock import iso
from exporter.destinations import open_destination as real_open_destination
from exporter.errors import CredentialError
from exporter.export.naming import window_path
from exporter.integrations.model import Status
from exporter.jobs import ExportJob, process_job
from exporter.local.host import tick
from exporter.runs import RunStatus
from exporter.windows import Window
from tests.destination_helpers import behind, destination_from_body
from tests.export_helpers import ACCOUNT, ACT, ExpiringDestination, H, assert_exactly_once, tick_collecting
from tests.helpers import call


def expire_after_two_commits(ctx, kit, monkeypatch) -> dict:
    """The kit's credentials work for two files, then the server refuses them (ExpiringDestination's state)."""
    state = {"expired": False, "good_commits": 2, "committed": [], "refused": []}

    def expiring(kind, secret, container, prefix):
        return ExpiringDestination(
            real_open_destination(kind, secret, container, prefix),
            destination_from_body(kit.refused_body(prefix)),
            state,
        )

    monkeypatch.setattr(ctx, "open_destination", expiring)
    return state


def test_credentials_expiring_during_a_catch_up_stop_at_once_and_resume_after_an_update(ctx, clock, kit, monkeypatch):
    iid = behind(ctx, clock, kit, 5, skip={3})  # five windows behind
    state = expire_after_two_commits(ctx, kit, monkeypatch)

    results = []
    worked = tick_collecting(ctx, results)["worker"]
    assert worked["windows_exported"] == 2
    assert results[0].stopped == CredentialError.code
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.CREDENTIAL_ERROR
    assert kit.refusal_words in integration.last_error
    assert integration.last_success_end == ACT + 2 * H, "the lag remains: nothing after the refusal counts"
    assert integration.queued_until is None
    third = Window(ACT + 2 * H, ACT + 3 * H)
    assert set(state["refused"]) == {window_path("insider/", ACCOUNT, iid, third)}, "no further window was attempted"
    assert len(kit.names()) == 2
    record = ctx.runs.get(ACCOUNT, iid, third.start_unix)
    assert record.status == RunStatus.FAILED and kit.refusal_words in record.error
    for secret in kit.secrets().values():
        assert secret not in integration.last_error and secret not in record.error

    # While stopped: the scheduler skips it, a stale message delivers nothing, and only verified credentials resume it.
    refused_before = len(state["refused"])
    clock.advance(hours=1)
    assert tick(ctx)["scheduler"]["queued"] == 0
    assert process_job(ctx, ExportJob(ACCOUNT, iid).to_message()).exported == 0
    assert len(state["refused"]) == refused_before and len(state["committed"]) == 2
    assert call(ctx, "integrations_resume", account=ACCOUNT, id=iid).status == 409, (
        "only verified credentials resume it"
    )
    kept = ("type", "bucket", "container", "prefix")
    refused_update = {k: v for k, v in kit.refused_body().items() if k not in kept}
    refused = call(ctx, "integrations_update", {"destination": refused_update}, account=ACCOUNT, id=iid)
    assert refused.status == 422 and refused.body["error"]["code"] == CredentialError.code
    assert ctx.repo.get(ACCOUNT, iid).status == Status.CREDENTIAL_ERROR

    # The customer updates the credentials (verified) → active → the next tick catches up oldest first.
    state.update(expired=False, good_commits=10**6)
    updated = call(ctx, "integrations_update", {"destination": kit.credentials_update()}, account=ACCOUNT, id=iid)
    assert updated.status == 200, updated.body
    assert updated.body["status"] == Status.ACTIVE and updated.body["last_error"] is None
    assert updated.body["last_success_end"] == iso(ACT + 2 * H)
    results.clear()
    worked = tick_collecting(ctx, results)["worker"]
    assert worked["windows_exported"] == 4  # windows 3, 4, 5 and the one that came due meanwhile
    starts = [w.window_start for r in results for w in r.windows]
    assert starts == [int((ACT + k * H).timestamp()) for k in range(2, 6)], "oldest first, from last_success_end"
    assert_exactly_once(ctx, kit, iid)
