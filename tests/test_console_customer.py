"""The console as a customer found it (page by page, over plain HTTP against `serve` on Azurite): a draft
becomes at most one integration, the limit is said before anything is verified, a refused field keeps
the others, errors read as sentences naming fields by their labels, a missing integration is a 404,
and the integrations page says where files go and when the next file is due. The browser's own moves
(Back, reload, a double click) are in test_console_browser_launch.py."""

# ruff: noqa: F811 - the fixtures `host` and `alice` are imported from tests/console_helpers.py, then requested

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from exporter.console import launch
from exporter.console.drafts import DraftRepo
from exporter.console.steps import LIMIT_REACHED
from tests.console_helpers import (  # noqa: F401
    Answer,
    alice,
    authenticate,
    host,
    sas_connection,
    start,
    wizard_path,
)
from tests.helpers import call, integration_body, run_together

ACCOUNT_PAGE = "/console/accounts/acme"
SELECTION = {"event": ["purchase"], "param": ['["purchase", "price"]']}
LAUNCH = {"name": "warehouse feed", "frequency_hours": "1", "status": "active"}
WIZARD_FORM = '<form method="post" action="/console/accounts/acme/wizard'


def to_launch(browser, connection: str, container: str) -> Answer:
    """The Launch step's page of a new Azure Blob wizard."""
    page = authenticate(browser, start(browser), connection, container)
    return browser.submit(page, wizard_path(page), SELECTION)


def listed(ctx, account: str = "acme") -> list[dict]:
    return call(ctx, "integrations_list", account=account).body["integrations"]


def draft_of(ctx, page: Answer):
    return DraftRepo(ctx.storage, ctx.clock).get("acme", wizard_path(page).split("/")[-2], "alice")


def inputs(page: Answer) -> dict[str, str]:
    """The text fields of a page with the values it filled in."""
    found = re.findall(r'<input id="f-[^"]+" name="([^"]+)" type="text" value="([^"]*)"', page.text)
    return {name: unescape(value) for name, value in found}


# ------------------------------------------------------------------ launch once


def test_launch_again_after_launching_says_already_launched_and_links_to_it(
    alice, ctx, azurite_connection, customer_container
):
    page = to_launch(alice, azurite_connection, customer_container.container_name)
    done = alice.submit(page, wizard_path(page), LAUNCH)
    assert done.status == 200 and "warehouse feed launched" in done.notice()
    (item,) = listed(ctx)
    assert item["id"] == launch.launch_id(draft_of(ctx, page))
    # The browser's Back shows the Launch step's form again (or its cached copy): Launch once more.
    again = alice.submit(page, wizard_path(page), LAUNCH)
    assert again.status == 200 and ">Already launched</h1>" in again.text
    assert f'href="/console/accounts/acme#h-{item["id"]}"' in again.text and "Go to warehouse feed" in again.text
    assert len(listed(ctx)) == 1
    # Every step of the launched draft says so, rather than offering its form again.
    for step in ("authentication", "configure", "launch"):
        shown = alice.get(wizard_path(page).replace("/launch", f"/{step}"))
        assert ">Already launched</h1>" in shown.text and WIZARD_FORM not in shown.text
    assert "1 of 5 destinations used" in alice.get(ACCOUNT_PAGE).text


def test_two_launches_at_the_same_moment_make_one_integration(alice, ctx, azurite_connection, customer_container):
    page = to_launch(alice, azurite_connection, customer_container.container_name)
    form = {"csrf_token": page.csrf(), **LAUNCH}
    answers = run_together(lambda _: alice.post(wizard_path(page), form, follow=False), 2)
    assert len(listed(ctx)) == 1
    assert sorted(a.status for a in answers) == [200, 303]  # one launched it; the other says it was
    assert any(">Already launched</h1>" in a.text for a in answers)


def test_a_launch_that_died_before_the_draft_recorded_it_is_found_again(
    alice, ctx, azurite_connection, customer_container, monkeypatch
):
    """The process dies between creating the integration and recording it in the draft: the id tells."""
    page = to_launch(alice, azurite_connection, customer_container.container_name)

    def die(*args, **kwargs):
        raise RuntimeError("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(launch, "_launched_message", die)
        assert alice.submit(page, wizard_path(page), LAUNCH).status == 500
    assert len(listed(ctx)) == 1 and not draft_of(ctx, page).launched_id
    before = len(list(customer_container.list_blobs()))
    again = alice.submit(page, wizard_path(page), LAUNCH)
    assert again.status == 200 and ">Already launched</h1>" in again.text
    assert len(listed(ctx)) == 1 and len(list(customer_container.list_blobs())) == before


def test_a_launched_integration_deleted_since_is_not_launched_again(alice, ctx, azurite_connection, customer_container):
    page = to_launch(alice, azurite_connection, customer_container.container_name)
    alice.submit(page, wizard_path(page), LAUNCH)
    (item,) = listed(ctx)
    assert call(ctx, "integrations_delete", account="acme", id=item["id"]).status == 200
    again = alice.submit(page, wizard_path(page), LAUNCH)
    assert again.status == 200 and "has since been deleted" in again.text and listed(ctx) == []


def test_saving_an_edit_again_says_already_saved(alice, ctx, azurite_connection, customer_container):
    body = integration_body(azurite_connection, customer_container.container_name)
    item = call(ctx, "integrations_create", body, account="acme").body
    edit = alice.submit(alice.get(ACCOUNT_PAGE), f"{ACCOUNT_PAGE}/integrations/{item['id']}/edit", {})
    page = alice.get(wizard_path(edit).replace("/authentication", "/launch"))
    form = {**LAUNCH, "frequency_hours": "6"}
    assert "warehouse feed saved" in alice.submit(page, wizard_path(page), form).notice()
    again = alice.submit(page, wizard_path(page), {**form, "frequency_hours": "12"})
    assert again.status == 200 and ">Already saved</h1>" in again.text and "Go to warehouse feed" in again.text
    assert call(ctx, "integrations_show", account="acme", id=item["id"]).body["frequency_hours"] == 6


def test_the_launched_message_shows_once(alice, azurite_connection, customer_container):
    page = to_launch(alice, azurite_connection, customer_container.container_name)
    launched = alice.submit(page, wizard_path(page), LAUNCH, follow=False)
    location = launched.headers["Location"]
    assert "warehouse feed launched" in alice.get(location).notice()
    assert alice.get(location).notice() == ""  # a reload


# ------------------------------------------------------------------ the limit, before anything is verified


def test_at_the_limit_nothing_is_verified_and_the_limit_reads_cleanly(
    alice, ctx, azurite_connection, customer_container, blob_service, tag
):
    """A SAS without delete permission leaves every verification's test file: none may appear."""
    others = blob_service.create_container(f"others-{tag}")
    made = [
        call(ctx, "integrations_create", integration_body(azurite_connection, others.container_name), account="acme")
        for _ in range(5)
    ]
    assert [m.status for m in made] == [201] * 5
    name = customer_container.container_name
    leaves_files = sas_connection(azurite_connection, name, write=True, create=True)
    page = alice.get(ACCOUNT_PAGE + "/new")
    assert page.alert() == LIMIT_REACHED and 'name="type"' not in page.text
    refused = alice.submit(alice.get(ACCOUNT_PAGE), ACCOUNT_PAGE + "/new", {"type": "azure_blob"})
    assert refused.status == 409 and refused.alert() == LIMIT_REACHED
    # A wizard opened at 4 of 5, and the fifth taken meanwhile (another tab): Verify says so, verifies nothing.
    call(ctx, "integrations_delete", account="acme", id=made[0].body["id"])
    page = start(alice)
    replaced = call(
        ctx, "integrations_create", integration_body(azurite_connection, others.container_name), account="acme"
    )
    assert replaced.status == 201
    for action in ("verify", "save"):
        refused = authenticate(alice, page, leaves_files, name, action=action)
        assert refused.status == 409 and refused.alert() == f"Authentication failed. {LIMIT_REACHED}"
    assert list(customer_container.list_blobs()) == []
    # At Launch the same: the limit is said before the destination is verified again.
    call(ctx, "integrations_delete", account="acme", id=replaced.body["id"])
    page = to_launch(alice, leaves_files, name)
    assert len(list(customer_container.list_blobs())) == 1  # Save and Continue verified, at 4 of 5
    call(ctx, "integrations_create", integration_body(azurite_connection, others.container_name), account="acme")
    refused = alice.submit(page, wizard_path(page), LAUNCH)
    assert refused.status == 409 and refused.alert() == f"The integration could not be launched. {LIMIT_REACHED}"
    assert "Account:" not in refused.text and "account 'acme'" not in refused.text
    assert len(list(customer_container.list_blobs())) == 1 and len(listed(ctx)) == 5


# ------------------------------------------------------------------ fields and sentences


def test_a_malformed_key_keeps_every_other_field(alice, gcs):
    page = start(alice, "gcs")
    given = {"bucket": gcs.bucket, "endpoint_url": gcs.emulator.url, "prefix": "insider/"}
    refused = alice.submit(page, wizard_path(page), {**given, "service_account_key": "{not json", "action": "save"})
    assert refused.status == 400
    assert refused.alert() == (
        "Authentication failed. Service Account Key (JSON): is not valid JSON: paste the whole key file."
    )
    assert inputs(refused) == given
    # What the page kept, with the key pasted again, goes on (nothing blames an emptied bucket).
    key = json.dumps(gcs.key)
    configure = alice.submit(refused, wizard_path(refused), {**inputs(refused), "service_account_key": key})
    assert ">Configure</h2>" in configure.text, configure.alert()


@pytest.mark.parametrize(("kind", "label"), [("azure_blob", "Container Name"), ("s3", "Bucket Name")])
def test_the_container_or_bucket_is_required(alice, kind, label):
    page = start(alice, kind)
    assert re.search(rf'<label for="f-(container|bucket)">{label}</label>', page.text)  # no "(Optional)"
    field = "container" if kind == "azure_blob" else "bucket"
    assert re.search(rf'name="{field}" type="text" value=""[^>]* required', page.text)
    refused = alice.submit(page, wizard_path(page), {field: "", "prefix": "p/", "action": "verify"})
    assert refused.status == 400 and refused.alert() == f"Authentication failed. {label}: is required."
    assert inputs(refused)["prefix"] == "p/"


def test_a_connection_string_given_with_a_missing_container_is_kept(alice, azurite_connection, customer_container):
    refused = authenticate(alice, start(alice), azurite_connection, "")
    assert refused.status == 400 and "A value you gave in this wizard is kept" in refused.text
    form = {"container": customer_container.container_name, "prefix": "", "action": "save"}
    assert ">Configure</h2>" in alice.submit(refused, wizard_path(refused), form).text


def test_errors_are_sentences_naming_the_fields_as_labelled(alice, azure_kit):
    refused = authenticate(
        alice, start(alice), azure_kit.refused_body()["connection_string"], azure_kit.container.container_name, "verify"
    )
    assert refused.alert().startswith("Authentication failed. ")
    after = refused.alert().removeprefix("Authentication failed. ")
    assert after[0].isupper() and after.endswith("."), refused.alert()
    refused = authenticate(
        alice, start(alice), azure_kit.connection, azure_kit.container.container_name, "verify", prefix="a/../b"
    )
    assert refused.alert().startswith("Authentication failed. Blob Path Prefix: must not have '.' or '..' segments")
    page = authenticate(alice, start(alice), azure_kit.connection, azure_kit.container.container_name)
    refused = alice.submit(page, wizard_path(page), {})
    assert refused.alert() == "Check the selection. Select at least one event."


# ------------------------------------------------------------------ the integrations page


def test_pause_resume_or_delete_of_a_missing_or_foreign_integration_is_a_404(
    alice, ctx, azurite_connection, customer_container
):
    body = integration_body(azurite_connection, customer_container.container_name, name="theirs")
    foreign = call(ctx, "integrations_create", body, account="other").body["id"]
    page = alice.get(ACCOUNT_PAGE)
    for integration_id in (foreign, "0123456789ab"):
        for action in ("pause", "resume", "delete"):
            answer = alice.submit(page, f"{ACCOUNT_PAGE}/integrations/{integration_id}/{action}", {})
            assert answer.status == 404, (integration_id, action)
            assert answer.alert() == "No such integration: it may have been deleted." and "theirs" not in answer.text
    assert call(ctx, "integrations_show", account="other", id=foreign).body["status"] == "active"


def test_the_list_shows_where_files_go_and_when_the_first_is_due(
    alice, ctx, gcs, azurite_connection, customer_container
):
    page = to_launch(alice, azurite_connection, customer_container.container_name)
    done = alice.submit(page, wizard_path(page), LAUNCH)
    assert done.notice().startswith(
        "warehouse feed launched. Its first file, for 2026-11-28 10:00 to 2026-11-28 11:00 UTC, "
        "is due at about 2026-11-28 11:02 UTC."
    )
    assert f"<dt>Container Name</dt><dd>{customer_container.container_name}</dd>" in done.text
    assert "<dt>Blob Path Prefix</dt><dd>insider/</dd>" in done.text
    assert (
        "<dt>Next file due</dt><dd>at about 2026-11-28 11:02 UTC, for 2026-11-28 10:00 to 2026-11-28 11:00 UTC</dd>"
        in done.text
    )
    body = {**integration_body("", ""), "name": "lake", "destination": gcs.body(prefix=""), "status": "paused"}
    assert call(ctx, "integrations_create", body, account="acme").status == 201
    shown = alice.get(ACCOUNT_PAGE).text
    assert f"<dt>Bucket Name</dt><dd>{gcs.bucket}</dd>" in shown
    assert "<dt>Path Prefix</dt><dd>none: the files go to the root</dd>" in shown
    assert "<dt>Next file due</dt><dd>none while paused</dd>" in shown


def test_every_page_names_a_favicon_that_is_served(alice):
    page = alice.get(ACCOUNT_PAGE)
    assert '<link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml">' in page.text
    icon = alice.get("/console/static/favicon.svg")
    assert icon.status == 200 and icon.headers["Content-Type"] == "image/svg+xml" and "<svg" in icon.text
