"""The wizard and the integrations page over plain HTTP against `serve` on Azurite: every step's form,
secrets never sent back, changed credentials verified again, errors explained at the top, and
customer strings (a hostile catalog) rendered as text."""

# ruff: noqa: F811 - the fixtures `host` and `alice` are imported from tests/console_helpers.py, then requested

from __future__ import annotations

import json
import re
from html import unescape

from exporter.console.fields import KEY, KEYLESS, auth_methods, fields_of, key_fields, keyless_fields
from exporter.console.steps import LIMIT_REACHED
from exporter.destinations import DESTINATION_KINDS
from exporter.storage import DRAFTS_TABLE
from tests.console_helpers import (  # noqa: F401
    HOSTILE_ATTRIBUTE,
    HOSTILE_EVENT,
    HOSTILE_PARAM,
    alice,
    authenticate,
    create,
    host,
    sas_connection,
    start,
    wizard_path,
)
from tests.helpers import call


def test_the_three_steps_create_an_integration(alice, ctx, azurite_connection, customer_container):
    page = start(alice)
    assert page.status == 200 and ">Authentication</h2>" in page.text
    for label in (
        "Connection String",
        "Container Name",
        "Blob Path Prefix",
        "Verify Authentication",
        "Save and Continue",
    ):
        assert label in page.text
    verified = authenticate(alice, page, azurite_connection, customer_container.container_name, action="verify")
    assert "Authentication verified" in verified.notice() and "deleted" in verified.notice()
    assert "AccountKey" not in verified.text  # the secret is never sent back, not even masked in a field
    assert "A value you gave in this wizard is kept when you leave this empty." in verified.text
    configure = alice.submit(
        verified,
        wizard_path(verified),
        {"action": "save", "container": customer_container.container_name, "prefix": "insider/"},
    )
    assert ">Configure</h2>" in configure.text and "Event Parameters: purchase" in configure.text
    launch = alice.submit(
        configure,
        wizard_path(configure),
        {"event": ["purchase"], "param": ['["purchase", "price"]'], "attribute": ["email"]},
    )
    assert "Sync Frequency" in launch.text and "Activation Status" in launch.text and "File Format" in launch.text
    form = {"name": "warehouse feed", "frequency_hours": "6", "status": "active", "format": "csv.gz"}
    done = alice.submit(launch, wizard_path(launch), form)
    assert done.status == 200 and "warehouse feed launched" in done.notice()
    assert "1 of 5 destinations used" in done.text
    (stored,) = call(ctx, "integrations_list", account="acme").body["integrations"]
    assert stored["events"] == [{"name": "purchase", "params": ["price"]}] and stored["attributes"] == ["email"]
    assert (stored["frequency_hours"], stored["status"], stored["destination"]["prefix"]) == (6, "active", "insider/")
    assert stored["format"] == "csv.gz" and "CSV, gzip-compressed" in done.text


def test_a_bad_connection_string_is_explained_at_the_top(alice):
    page = authenticate(alice, start(alice), "not a connection string", "somecontainer", action="verify")
    assert page.status == 400  # as the API answers
    assert page.alert().startswith("Authentication failed. Connection String: is malformed")
    assert page.text.index("<main") < page.text.index('role="alert"') < page.text.index("<h1")  # the top of the page


def test_a_sas_without_delete_permission_leaves_the_test_file_and_says_so(
    alice, azurite_connection, customer_container
):
    name = customer_container.container_name
    conn = sas_connection(azurite_connection, name, write=True, create=True)
    page = authenticate(alice, start(alice), conn, name, action="verify")
    assert page.status == 200
    assert "was left in place" in page.notice() and "delete" in page.notice()
    left = [b.name for b in customer_container.list_blobs()]
    assert len(left) == 1 and left[0].startswith("insider/.export-verify-") and left[0].split("/")[-1] in page.notice()


def test_the_sixth_integration_is_refused_with_the_limit_explained(alice, azurite_connection, customer_container):
    for n in range(5):
        assert create(alice, azurite_connection, customer_container.container_name, name=f"feed {n}").status == 200
    page = alice.get("/console/accounts/acme")
    assert "5 of 5 destinations used" in page.text
    refused = alice.submit(page, "/console/accounts/acme/new", {"type": "azure_blob"})
    assert refused.status == 409 and refused.alert() == LIMIT_REACHED
    assert "delete one before adding another" in refused.alert().lower() and "Account:" not in refused.text


def test_a_column_collision_is_explained_before_launch(alice, azurite_connection, customer_container):
    page = authenticate(alice, start(alice), azurite_connection, customer_container.container_name)
    refused = alice.submit(page, wizard_path(page), {})
    assert refused.status == 400 and refused.alert() == "Check the selection. Select at least one event."
    # signup's parameter "attr_email" and the attribute "email" (column attr_email) would share a header.
    selection = {"event": ["signup"], "param": ['["signup", "attr_email"]'], "attribute": ["email"]}
    refused = alice.submit(refused, wizard_path(refused), selection)
    assert refused.status == 400 and ">Configure</h2>" in refused.text  # still before Launch
    assert refused.alert() == (
        "These selections cannot be exported together. Column 'attr_email' would collide with parameter 'attr_email'."
    )
    assert 'value="email" checked' in refused.text  # the selection is kept to be corrected
    assert alice.get(wizard_path(refused).replace("/configure", "/launch"), follow=False).status == 303


def test_edit_reopens_filled_in_without_the_secret_and_verifies_changed_credentials(
    alice, ctx, azurite_connection, customer_container, blob_service, tag
):
    create(alice, azurite_connection, customer_container.container_name)
    (item,) = call(ctx, "integrations_list", account="acme").body["integrations"]
    page = alice.get("/console/accounts/acme")
    edit = alice.submit(page, f"/console/accounts/acme/integrations/{item['id']}/edit", {})
    assert ">Authentication</h2>" in edit.text
    assert f'value="{customer_container.container_name}"' in edit.text and 'value="insider/"' in edit.text
    assert (
        "AccountKey=***" in edit.text
        and "Eby8vdM02" not in edit.text
        and 'name="connection_string" type="password" value=""' in edit.text
    )
    # Unchanged credentials: straight on, no verification (no test file written).
    before = len(list(customer_container.list_blobs()))
    configure = alice.submit(
        edit,
        wizard_path(edit),
        {"action": "save", "container": customer_container.container_name, "prefix": "insider/"},
    )
    assert 'value="[&#34;purchase&#34;, &#34;price&#34;]" checked' in configure.text
    launch = alice.submit(
        configure, wizard_path(configure), {"event": ["purchase"], "param": ['["purchase", "price"]']}
    )
    assert '<option value="1" selected>' in launch.text
    assert '<option value="csv" selected>' in launch.text  # the stored format, kept by an edit
    saved = alice.submit(
        launch, wizard_path(launch), {"name": item["name"], "frequency_hours": "12", "status": "active"}
    )
    assert (
        saved.status == 200
        and call(ctx, "integrations_show", account="acme", id=item["id"]).body["frequency_hours"] == 12
    )
    assert len(list(customer_container.list_blobs())) == before
    # A changed container is verified again: a missing one is refused at the top of the page.
    edit = alice.submit(
        alice.get("/console/accounts/acme"), f"/console/accounts/acme/integrations/{item['id']}/edit", {}
    )
    refused = alice.submit(
        edit, wizard_path(edit), {"action": "save", "container": f"missing-{tag}", "prefix": "insider/"}
    )
    assert refused.status == 422 and refused.alert().startswith("Authentication failed.")
    assert (
        call(ctx, "integrations_show", account="acme", id=item["id"]).body["destination"]["container"]
        == customer_container.container_name
    )


def test_pause_resume_delete_with_confirmation(alice, ctx, azurite_connection, customer_container):
    create(alice, azurite_connection, customer_container.container_name)
    (item,) = call(ctx, "integrations_list", account="acme").body["integrations"]
    page = alice.get("/console/accounts/acme")
    paused = alice.submit(page, f"/console/accounts/acme/integrations/{item['id']}/pause", {})
    assert "Paused warehouse feed" in paused.notice() and ">Paused<" in paused.text
    resumed = alice.submit(paused, f"/console/accounts/acme/integrations/{item['id']}/resume", {})
    assert "Resumed warehouse feed" in resumed.notice()
    confirm = alice.get(f"/console/accounts/acme/integrations/{item['id']}/delete")
    assert "Delete warehouse feed?" in unescape(confirm.text)
    assert call(ctx, "integrations_list", account="acme").body["integrations"]  # nothing deleted by looking
    deleted = alice.submit(confirm, f"/console/accounts/acme/integrations/{item['id']}/delete", {})
    assert "Deleted warehouse feed" in deleted.notice() and "0 of 5 destinations used" in deleted.text


def test_customer_strings_are_rendered_as_text(alice, azurite_connection, customer_container):
    page = authenticate(alice, start(alice), azurite_connection, customer_container.container_name)
    for raw in (HOSTILE_EVENT, HOSTILE_PARAM, HOSTILE_ATTRIBUTE):
        assert raw not in page.text  # never verbatim: markup and quotes are escaped
    assert "&lt;script&gt;alert(&#34;e&#34;)&lt;/script&gt;" in page.text
    assert "&#34;&gt;&lt;img src=x onerror=alert(&#39;p&#39;)&gt;" in page.text
    labels = [unescape(m) for m in re.findall(r"<label for=\"[^\"]+\">([^<]*)</label>", page.text)]
    assert HOSTILE_EVENT in labels and HOSTILE_PARAM in labels and HOSTILE_ATTRIBUTE in labels
    # The hostile event and parameter go through the whole wizard and back, as data.
    launch = alice.submit(
        page,
        wizard_path(page),
        {
            "event": [HOSTILE_EVENT],
            "param": [
                f'["{HOSTILE_EVENT.replace(chr(34), chr(92) + chr(34))}", "{HOSTILE_PARAM.replace(chr(34), chr(92) + chr(34))}"]'
            ],
            "attribute": [HOSTILE_ATTRIBUTE],
        },
    )
    assert ">Launch</h2>" in launch.text, launch.alert()
    done = alice.submit(
        launch, wizard_path(launch), {"name": '<b onmouseover="x">feed</b>', "frequency_hours": "1", "status": "paused"}
    )
    assert "&lt;b onmouseover=&#34;x&#34;&gt;feed&lt;/b&gt;" in done.text and '<b onmouseover="x">' not in done.text


def test_every_destination_type_takes_its_fields_from_its_declaration():
    for kind in DESTINATION_KINDS.values():
        assert auth_methods(kind) == (KEYLESS, KEY), "every type registered here has a keyless form, offered first"
        for auth, other in ((KEY, keyless_fields(kind)), (KEYLESS, key_fields(kind))):
            fields = fields_of(kind, auth)
            assert {f.name for f in fields} == {*kind.parameter_fields, "prefix"} - other
            assert not any(f.secret for f in fields) if auth == KEYLESS else any(f.secret for f in fields)
        # The container or bucket too: the API lets a SAS URL name it, the form requires it as the product page does;
        # and the key of the key-based form (the API also takes a keyless body instead).
        required = {*kind.required, kind.container_field, *key_fields(kind)}
        assert {f.name for f in fields_of(kind, KEY) if f.required} == required
    azure = [f.label for f in fields_of(DESTINATION_KINDS["azure_blob"])]
    assert azure == ["Connection String", "Container Name", "Blob Path Prefix"]  # the product page's words
    keyless = {
        name: [(f.label, f.required) for f in fields_of(kind, KEYLESS)] for name, kind in DESTINATION_KINDS.items()
    }
    assert keyless["azure_blob"] == [
        ("Account URL", True),
        ("Tenant ID", True),
        ("Container Name", True),
        ("Blob Path Prefix", False),
    ]
    assert keyless["s3"][:3] == [("Region", True), ("Role ARN", True), ("Bucket Name", True)]
    # GCS without a key nor anyone to impersonate is the platform's own identity: the field is optional.
    assert keyless["gcs"][:2] == [("Bucket Name", True), ("Service Account to Impersonate", False)]


def test_each_destination_type_through_the_console(alice, ctx, kit):
    page = start(alice, kit.kind)
    given = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in kit.body().items() if k != "type"}
    for name in given:
        assert f'name="{name}"' in page.text
    configure = alice.submit(page, wizard_path(page), {**given, "action": "save"})
    assert ">Configure</h2>" in configure.text, configure.alert()
    launch = alice.submit(configure, wizard_path(configure), {"event": ["purchase"]})
    done = alice.submit(
        launch, wizard_path(launch), {"name": f"{kit.kind} feed", "frequency_hours": "1", "status": "active"}
    )
    assert f"{kit.kind} feed launched" in done.notice()
    (item,) = call(ctx, "integrations_list", account="acme").body["integrations"]
    assert item["destination"]["type"] == kit.kind
    edit = alice.submit(done, f"/console/accounts/acme/integrations/{item['id']}/edit", {})
    for secret in kit.secrets().values():
        assert secret not in edit.text  # masked at most, never the secret itself


def test_a_wizard_older_than_a_day_has_expired_and_is_purged(alice, ctx, clock):
    old = wizard_path(start(alice))
    clock.advance(days=1, minutes=1)
    assert alice.get(old).status == 404  # expired: "start again"
    start(alice)  # a new wizard purges the account's expired ones
    rows = [e["RowKey"] for e in ctx.storage.table(DRAFTS_TABLE).query_entities("PartitionKey eq 'acme'")]
    assert len(rows) == 1 and rows[0] not in old
