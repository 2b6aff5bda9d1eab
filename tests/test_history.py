"""The history of an account (exporter/history.py): who changed an integration or the members, what and
when, newest first; secrets only as "changed"; crashes and retries record a change once. Against Azurite,
moto and the GCS emulator, through the API operations, the function app's HTTP functions, the CLI and
the console."""

from __future__ import annotations

import base64
import json

import azure.functions as func
import pytest

from exporter import api, cli, triggers
from exporter.errors import TransientError
from exporter.integrations.model import Status
from exporter.local.cloudservers import service_account_key
from exporter.local.host import tick
from exporter.local.serve import LocalHost
from exporter.members import MemberRepo
from tests.app_functions import FUNCTIONS
from tests.console_helpers import Browser, sas_connection
from tests.destination_helpers import behind, destination_from_body
from tests.destination_helpers import integration_body as kit_integration_body
from tests.helpers import call


def principal(name: str) -> dict[str, str]:
    claims = {"auth_typ": "aad", "name_typ": "upn", "claims": [{"typ": "upn", "val": name}]}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(claims).encode()).decode()}


def patch(ctx, iid, body, account="acme", headers=None) -> api.ApiResponse:
    request = api.ApiRequest(
        params={"account": account, "id": iid}, body=json.dumps(body).encode(), headers=headers or {}
    )
    return api.handle(ctx, "integrations_update", request)


def history(ctx, iid, account="acme", **query) -> list[dict]:
    request = api.ApiRequest(params={"account": account, "id": iid}, query={k: str(v) for k, v in query.items()})
    answer = api.handle(ctx, "integrations_history", request)
    assert answer.status == 200, answer.body
    return answer.body["history"]


@pytest.fixture
def alice(ctx):
    """Alice, a member of acme, signed in to the console of a `serve` on the test's context."""
    MemberRepo(ctx.storage, ctx.clock).add("acme", "alice")
    host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, dev_sign_in=True).start()
    browser = Browser(host.console_url.removesuffix("/console"))
    browser.sign_in("alice")
    yield browser
    host.stop()


@pytest.fixture
def created(ctx, customer_body) -> str:
    answer = call(ctx, "integrations_create", customer_body, account="acme")
    assert answer.status == 201, answer.body
    return answer.body["id"]


# ------------------------------------------------------------------ who


def test_who_is_the_signed_in_user_or_the_operator(ctx, clock, created, monkeypatch):
    MemberRepo(ctx.storage, ctx.clock).add("acme", "alice@contoso.com")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    clock.advance(minutes=1)
    assert patch(ctx, created, {"frequency_hours": 6}, headers=principal("Alice@Contoso.com")).status == 200
    clock.advance(minutes=1)
    assert patch(ctx, created, {"frequency_hours": 12}).status == 200  # the function key: no principal
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "False")
    clock.advance(minutes=1)
    # Where App Service Authentication is off, nobody strips the headers: anyone could send them.
    assert patch(ctx, created, {"frequency_hours": 24}, headers=principal("mallory@evil.example")).status == 200
    assert [(e["who"], e["action"]) for e in history(ctx, created)] == [
        ("operator", "updated"),
        ("operator", "updated"),
        ("alice@contoso.com", "updated"),
        ("operator", "created"),
    ]


def test_through_the_function_app_a_member_reads_the_history_and_the_members_history_is_for_operators(
    ctx, clock, created, monkeypatch
):
    triggers.use_context(ctx)
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    clock.advance(minutes=1)
    MemberRepo(ctx.storage, ctx.clock).add("acme", "alice")
    url = f"https://app.example/api/accounts/acme/integrations/{created}/history"

    def get(function, url, params, headers):
        handler = FUNCTIONS[function].get_user_function()
        answer = handler(func.HttpRequest("GET", url, body=b"", route_params=params, headers=headers))
        return answer.status_code, json.loads(answer.get_body())

    try:
        status, body = get("integration_history", url, {"account": "acme", "id": created}, principal("alice"))
        assert status == 200 and [e["action"] for e in body["history"]] == ["created"]
        status, _ = get("integration_history", url, {"account": "acme", "id": created}, principal("mallory"))
        assert status == 404
        account_url = "https://app.example/api/accounts/acme/history"
        assert get("account_history", account_url, {"account": "acme"}, principal("alice"))[0] == 403
        status, body = get("account_history", account_url, {"account": "acme"}, {})
        assert status == 200 and [e["action"] for e in body["history"]] == ["added", "created"]
    finally:
        triggers.use_context(None)


# ------------------------------------------------------------------ what, and in which order


def test_each_change_names_its_fields_with_old_and_new_values_newest_first(ctx, clock, created):
    clock.advance(minutes=1)
    patch(ctx, created, {"frequency_hours": 6, "name": "nightly feed", "attributes": ["email", "plan"]})
    clock.advance(minutes=1)
    assert call(ctx, "integrations_pause", account="acme", id=created).status == 200
    clock.advance(minutes=1)
    assert call(ctx, "integrations_resume", account="acme", id=created).status == 200
    clock.advance(minutes=1)
    patch(ctx, created, {"destination": {"prefix": "other/"}})
    entries = history(ctx, created)
    assert [e["action"] for e in entries] == ["updated", "resumed", "paused", "updated", "created"]
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    assert entries[0]["changes"] == [{"field": "destination.prefix", "old": "insider/", "new": "other/"}]
    assert entries[0]["credentials_verified"] is True
    assert entries[1]["changes"] == [{"field": "status", "old": "paused", "new": "active"}]
    assert entries[2]["changes"] == [{"field": "status", "old": "active", "new": "paused"}]
    assert entries[3]["changes"] == [
        {"field": "attributes", "old": ["email"], "new": ["email", "plan"]},
        {"field": "frequency_hours", "old": 1, "new": 6},
        {"field": "name", "old": "warehouse feed", "new": "nightly feed"},
    ]
    fields = {c["field"]: c for c in entries[4]["changes"]}
    assert fields["frequency_hours"] == {"field": "frequency_hours", "old": None, "new": 1}
    assert fields["destination.prefix"] == {"field": "destination.prefix", "old": None, "new": "insider/"}
    assert fields["destination.connection_string"] == {"field": "destination.connection_string", "changed": True}
    assert entries[4]["at"] == "2026-11-28T10:00:00.000Z"
    # A bounded page: the newest N.
    assert [e["action"] for e in history(ctx, created, limit=2)] == ["updated", "resumed"]


def test_changes_made_at_one_instant_keep_their_order(ctx, created):
    for hours in (2, 4, 6, 12, 24):  # the injected clock does not move
        assert patch(ctx, created, {"frequency_hours": hours}).status == 200
    entries = history(ctx, created)
    frequencies = [next(c["new"] for c in e["changes"] if c["field"] == "frequency_hours") for e in entries]
    assert frequencies == [24, 12, 6, 4, 2, 1]
    assert len({e["at"] for e in entries}) == 1


def test_a_request_that_changes_nothing_records_nothing(ctx, clock, created):
    for _ in range(2):
        clock.advance(minutes=1)
        patch(ctx, created, {"frequency_hours": 6})
        clock.advance(minutes=1)
        call(ctx, "integrations_pause", account="acme", id=created)
    assert [e["action"] for e in history(ctx, created)] == ["paused", "updated", "created"]


def test_a_deleted_integration_is_in_the_account_history(ctx, clock, created):
    clock.advance(minutes=1)
    assert call(ctx, "integrations_delete", account="acme", id=created).status == 200
    assert call(ctx, "integrations_history", account="acme", id=created).status == 404
    entries = call(ctx, "members_history", account="acme").body["history"]
    assert [(e["action"], e["id"]) for e in entries] == [("deleted", created), ("created", created)]


def test_another_accounts_integration_is_not_found_exactly_like_its_runs(ctx, created):
    for account, iid in (("other", created), ("acme", "0123456789ab")):
        runs = call(ctx, "integrations_runs", account=account, id=iid)
        found = call(ctx, "integrations_history", account=account, id=iid)
        assert found.status == runs.status == 404
        assert found.body == runs.body


# ------------------------------------------------------------------ secrets


def other_credentials(kit) -> tuple[dict, str, list[str]]:
    """Working credentials other than the kit's: the update, its secret, and the fields the history names."""
    if kit.kind == "s3":  # a key of another user
        key = kit.server.create_user(f"u2-{kit.bucket}", ["s3:*"], kit.bucket)
        return key, key["secret_access_key"], ["destination.access_key_id", "destination.secret_access_key"]
    if kit.kind == "gcs":  # another service account's key
        key = service_account_key(kit.key["token_uri"], name=f"sa2-{kit.bucket}")
        return (
            {"service_account_key": key},
            key["private_key"],
            ["destination.client_email", "destination.service_account_key"],
        )
    permissions = {"read": True, "write": True, "delete": True, "list": True, "create": True}
    connection = sas_connection(kit.connection, kit.container.container_name, **permissions)
    return (
        {"connection_string": connection},
        connection.split("SharedAccessSignature=")[1],
        ["destination.connection_string"],
    )


def test_secrets_are_only_ever_said_to_have_changed(ctx, clock, kit, capsys, monkeypatch, request):
    answer = call(ctx, "integrations_create", kit_integration_body(kit.body()), account="acme")
    assert answer.status == 201, answer.body
    iid = answer.body["id"]
    clock.advance(minutes=1)
    assert patch(ctx, iid, {"destination": kit.credentials_update()}).status == 200  # the same secret, verified again
    update, second_secret, fields = other_credentials(kit)
    secrets = {**kit.secrets(), "the second secret": second_secret}
    clock.advance(minutes=1)
    changed = patch(ctx, iid, {"destination": update})
    assert changed.status == 200, changed.body
    entries = history(ctx, iid)
    assert [e["action"] for e in entries] == ["updated", "credentials verified", "created"]
    assert [c["field"] for c in entries[0]["changes"]] == fields
    secret_field = fields[-1]
    assert {"field": secret_field, "changed": True} in entries[0]["changes"]
    assert {"field": secret_field, "changed": True} in entries[2]["changes"]
    # The answers of the API, the CLI and the console.
    shown = [json.dumps(entries), json.dumps(call(ctx, "members_history", account="acme").body)]
    monkeypatch.setenv("AzureWebJobsStorage", ctx.settings.storage_connection)
    monkeypatch.setenv("EXPORT_TABLE_PREFIX", ctx.settings.table_prefix)
    monkeypatch.setenv("EXPORT_SECRET_KEY", ctx.settings.secret_key)
    capsys.readouterr()
    assert cli.main(["integrations", "history", "--account", "acme", iid]) == 0
    shown.append(capsys.readouterr().out)
    assert json.loads(shown[-1])["history"] == entries
    page = request.getfixturevalue("alice").get("/console/accounts/acme")
    assert page.status == 200 and "credentials verified" in page.text
    shown.append(page.text)
    for text in shown:
        for what, secret in secrets.items():
            assert secret not in text, what
            assert secret.replace("/", "\\/") not in text, what


def test_the_workers_stop_is_the_systems_and_the_recovery_whoevers(ctx, clock, azure_kit, monkeypatch):
    iid = behind(ctx, clock, azure_kit, 2)
    monkeypatch.setattr(ctx, "open_destination", lambda *args: destination_from_body(azure_kit.refused_body()))
    tick(ctx)
    assert ctx.repo.get("acme", iid).status == Status.CREDENTIAL_ERROR
    monkeypatch.undo()
    clock.advance(minutes=1)
    assert patch(ctx, iid, {"destination": azure_kit.credentials_update()}).status == 200
    entries = history(ctx, iid)
    assert [(e["who"], e["action"]) for e in entries] == [
        ("operator", "resumed"),  # verified credentials end the stop
        ("system", "stopped"),
        ("operator", "created"),
    ]
    assert entries[1]["changes"] == [{"field": "status", "old": "active", "new": "credential_error"}]
    assert entries[0]["changes"] == [{"field": "status", "old": "credential_error", "new": "active"}]
    assert entries[0]["credentials_verified"] is True


# ------------------------------------------------------------------ members


def test_members_added_and_removed_are_recorded_once(ctx, clock, monkeypatch):
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    for _ in range(2):  # a retried request changes nothing the second time, and records nothing
        clock.advance(minutes=1)
        assert call(ctx, "members_add", account="acme", user="Bob@Contoso.com").status == 200
    clock.advance(minutes=1)
    for _ in range(2):
        assert call(ctx, "members_remove", account="acme", user="bob@contoso.com").status == 200
    call(ctx, "members_add", account="other", user="carol")
    entries = call(ctx, "members_history", account="acme").body["history"]
    assert [(e["action"], e["user"], e["who"], e["subject"]) for e in entries] == [
        ("removed", "bob@contoso.com", "operator", "member"),
        ("added", "bob@contoso.com", "operator", "member"),
    ]
    assert entries[1]["at"] == "2026-11-28T10:01:00.000Z"


# ------------------------------------------------------------------ crashes and retries


def test_a_change_that_died_before_it_was_made_is_not_shown_and_its_retry_shows_once(ctx, clock, created, monkeypatch):
    replace = ctx.repo.replace

    def dies(integration, **_along):
        raise TransientError("the process died here")

    clock.advance(minutes=1)
    monkeypatch.setattr(ctx.repo, "replace", dies)
    assert patch(ctx, created, {"frequency_hours": 6}).status == 503
    assert [e["action"] for e in history(ctx, created)] == ["created"]  # intended, never made
    monkeypatch.setattr(ctx.repo, "replace", replace)
    clock.advance(minutes=1)
    assert patch(ctx, created, {"frequency_hours": 6}).status == 200  # the retry
    entries = history(ctx, created)
    assert [e["action"] for e in entries] == ["updated", "created"]
    assert entries[0]["changes"] == [{"field": "frequency_hours", "old": 1, "new": 6}]


def test_a_change_made_but_not_confirmed_is_shown_and_its_retry_adds_nothing(ctx, clock, created, monkeypatch):
    def dies(entry):
        raise TransientError("the process died here")

    clock.advance(minutes=1)
    monkeypatch.setattr(ctx.integrations.history_repo, "confirm", dies)
    assert patch(ctx, created, {"frequency_hours": 6}).status == 503
    assert call(ctx, "integrations_delete", account="acme", id="0123456789ab").status == 404
    monkeypatch.undo()
    assert [e["action"] for e in history(ctx, created)] == ["updated", "created"]
    clock.advance(minutes=1)
    assert patch(ctx, created, {"frequency_hours": 6}).status == 200  # the retry: nothing left to change
    assert [e["action"] for e in history(ctx, created)] == ["updated", "created"]
    clock.advance(minutes=1)
    patch(ctx, created, {"frequency_hours": 1})
    clock.advance(minutes=1)
    patch(ctx, created, {"frequency_hours": 6})  # the same change again, after another: a new entry
    assert [e["changes"][0]["new"] for e in history(ctx, created)[:3]] == [6, 1, 6]


# ------------------------------------------------------------------ the console


def test_the_console_shows_the_history_of_each_integration(ctx, clock, created, alice):
    page = alice.get("/console/accounts/acme")
    clock.advance(minutes=5)
    paused = alice.submit(page, f"/console/accounts/acme/integrations/{created}/pause", {})
    assert paused.status == 200
    section = paused.text[paused.text.index(f'id="hist-{created}"') :]
    rows = section[: section.index("</table>")]
    assert "2026-11-28 10:05</td>\n        <td>alice</td>\n        <td>Paused</td>" in rows
    assert "status: active → paused" in rows
    assert "<td>operator</td>\n        <td>Created (credentials verified)</td>" in rows
    assert rows.index("Paused") < rows.index("Created")
    assert history(ctx, created)[0]["who"] == "alice"
