"""The console's keyless form (over plain HTTP against `serve`): each type's Authentication step offers it
first, shows the platform's identity to grant for the signed-in account (its own external id, never another
account's) with the commands that grant it, and creates an integration that stores no secret; the key-based
form stays one link away; editing opens the way an integration authenticates.

The servers are the keyless tests' own (tests/keyless_helpers.py): moto with IAM enforced (the S3 role is
made from the very commands the page shows), Azurite with OAuth and the Entra stand-in, the GCS emulator
behind google-auth's real federation flows.
"""

# ruff: noqa: F811 - the fixtures `host` and `alice` (tests/console_helpers.py), and the keyless tests' servers and
# contexts (tests/test_keyless_s3.py, tests/test_keyless_azure.py) are imported, then requested

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

from exporter.context import Context
from exporter.identity import azure_grant, gcs_grant, s3_grant
from exporter.local.serve import LocalHost
from exporter.members import MemberRepo
from tests.console_helpers import Answer, Browser, alice, host, start, wizard_path  # noqa: F401
from tests.destination_helpers import REGION, new_bucket_name
from tests.helpers import call
from tests.keyless_helpers import PLATFORM_SA, google_platform, make_role_kit
from tests.test_keyless_azure import APP_ID, CUSTOMER_TENANT, entra_ctx, entra_kit, oauth_servers  # noqa: F401
from tests.test_keyless_gcs import CUSTOMER_SA
from tests.test_keyless_s3 import kctx, platform  # noqa: F401

DOCS = Path(__file__).resolve().parent.parent / "docs" / "keyless.md"
SELECTION = {"event": ["purchase"]}
LAUNCH = {"name": "keyless feed", "frequency_hours": "1", "status": "active"}


# ------------------------------------------------------------------ the page, read


def method(page: Answer) -> str:
    """The way of authenticating the page shows (the current one of "Keyless (recommended)" / "With a key")."""
    found = re.search(
        r'<nav aria-label="How to authenticate".*?<span aria-current="true">(.*?)</span>', page.text, re.S
    )
    return unescape(found[1]) if found else ""


def commands(page: Answer) -> list[str]:
    return [
        unescape(c) for c in re.findall(r'<pre id="command-\d+" tabindex="0"><code>(.*?)</code></pre>', page.text, re.S)
    ]


def shown_identity(page: Answer) -> dict[str, str]:
    panel = page.text[page.text.index('<section class="grant"') : page.text.index("</section>")]
    return {unescape(k): unescape(v) for k, v in re.findall(r"<dt>(.*?)</dt><dd><code>(.*?)</code></dd>", panel)}


def inputs(page: Answer) -> dict[str, str]:
    found = re.findall(r'<input id="f-[^"]+" name="([^"]+)" type="(?:text|password)" value="([^"]*)"', page.text)
    return {name: unescape(value) for name, value in found}


def argument(command: str, option: str) -> str:
    """An option's value in a shell command as the shell reads it (continuation lines joined)."""
    words = shlex.split(command.replace("\\\n", " "))
    return words[words.index(option) + 1]


def launched(browser: Browser, page: Answer) -> Answer:
    """Save and Continue from a filled-in Authentication step, then Configure and Launch."""
    configure = browser.submit(page, wizard_path(page), {**_form(page), "action": "save"})
    assert ">Configure</h2>" in configure.text, configure.alert()
    launch = browser.submit(configure, wizard_path(configure), SELECTION)
    return browser.submit(launch, wizard_path(launch), LAUNCH)


def _form(page: Answer) -> dict[str, str]:
    found = re.search(r'<input type="hidden" name="auth" value="([a-z]+)">', page.text)
    assert found, "the Authentication step's form names its way"
    return {"auth": found[1], **inputs(page)}


def opened_destination(ctx: Context, integration_id: str) -> dict[str, Any]:
    return json.loads(ctx.integrations.secrets.open(ctx.repo.get("acme", integration_id).destination.sealed_secret))


@contextlib.contextmanager
def console(ctx: Context) -> Iterator[Browser]:
    """`serve` on this context (its platform identities) with alice signed in, a member of acme."""
    MemberRepo(ctx.storage, ctx.clock).add("acme", "alice")
    user = {"user_id": "u1", "events": [{"event_name": "purchase", "timestamp": "2026-11-28T09:00:00Z"}]}
    assert call(ctx, "ucd_upsert", {"users": [user]}, account="acme").status == 200
    local = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, dev_sign_in=True).start()
    try:
        browser = Browser(local.console_url.removesuffix("/console"))
        browser.sign_in("alice")
        yield browser
    finally:
        local.stop()


def verified_bodies(ctx: Context, monkeypatch) -> list[dict[str, Any]]:
    """Every destination body the console verifies from now on."""
    bodies: list[dict[str, Any]] = []
    verify = ctx.integrations.verify

    def recording(account: str, body: Any) -> dict[str, Any]:
        bodies.append(dict(body))
        return verify(account, body)

    monkeypatch.setattr(ctx.integrations, "verify", recording)
    return bodies


# ------------------------------------------------------------------ the commands: one wording, in the docs too


def test_the_docs_give_the_commands_the_console_shows():
    """docs/keyless.md shows the commands with its example values; the same function words both."""
    docs = " ".join(DOCS.read_text().split())
    grants = [
        s3_grant(
            "arn:aws:iam::111122223333:role/event-export",
            "Vq0tX3mKp9LzR2wB7yN4cH8sD1fG6jQa",
            "acme-exports",
            "insider/",
            "arn:aws:iam::444455556666:role/event-export",
        ),
        azure_grant(APP_ID, "https://acme.blob.core.windows.net", "exports"),
        gcs_grant(PLATFORM_SA, "acme-exports", "exporter@my-project.iam.gserviceaccount.com"),
    ]
    shown = [c for grant in grants for step in grant.steps for c in step.commands]
    assert len(shown) == 9
    for command in shown:
        assert " ".join(command.split()) in docs, command
    assert "aws iam create-role --role-name event-export" in shown[0] and "Vq0tX3mKp9LzR2wB7yN4cH8sD1fG6jQa" in shown[0]
    assert shown[3] == f"az ad sp create --id {APP_ID}"
    assert '--role "Storage Blob Data Contributor"' in shown[4]
    assert "--role=roles/storage.objectAdmin" in shown[6] and "roles/iam.serviceAccountTokenCreator" in shown[7]


def test_a_name_that_is_not_plain_never_reaches_a_command():
    """What the step holds so far may be anything typed: a command carries a plain name or the placeholder."""
    grant = s3_grant("arn:aws:iam::111122223333:user/p", "ext", "$(touch x)", "a'b/", "arn:aws:iam::1:role/`id`")
    create, policy, get = (c for step in grant.steps for c in step.commands)
    assert "$(" not in create + get and "`" not in create + get
    assert argument(create, "--role-name") == "event-export"
    assert json.loads(argument(policy, "--policy-document"))["Statement"][0]["Resource"] == "arn:aws:s3:::BUCKET/a'b/*"
    azure = azure_grant(APP_ID, "https://x;rm.blob.core.windows.net", "c o n")
    assert "STORAGE_ACCOUNT" in azure.steps[1].commands[0] and "containers/CONTAINER" in azure.steps[1].commands[0]


# ------------------------------------------------------------------ S3 by role


def test_keyless_s3_through_the_commands_the_page_shows(kctx, platform, moto_s3, tag, monkeypatch):
    theirs = kctx.identity("other")["aws"]["external_id"]
    bucket = new_bucket_name(tag)
    moto_s3.client().create_bucket(Bucket=bucket)
    account_id = platform.arn.split(":")[4]
    role_arn = f"arn:aws:iam::{account_id}:role/export-{tag}"
    with console(kctx) as browser:
        bodies = verified_bodies(kctx, monkeypatch)
        page = start(browser, "s3")
        assert method(page) == "Keyless (recommended)"
        assert 'name="role_arn"' in page.text and 'name="access_key_id"' not in page.text
        ours = kctx.identity("acme")["aws"]["external_id"]
        assert shown_identity(page) == {"Platform principal": platform.arn, "External ID": ours}
        assert theirs not in page.text, "another account's external id"
        assert "arn:aws:s3:::BUCKET/*" in commands(page)[1], "the bucket is not known yet"
        # A refusal (no region yet) keeps what was given: the page's commands now name the bucket, prefix and role.
        given = {"bucket": bucket, "role_arn": role_arn, "endpoint_url": moto_s3.url, "prefix": "insider/"}
        refused = browser.submit(page, wizard_path(page), {"auth": "keyless", **given, "action": "verify"})
        assert refused.status == 400 and refused.alert() == "Authentication failed. Region: is required."
        assert inputs(refused) == {**given, "region": ""}
        create, policy, _get = commands(refused)
        # The customer runs them: moto's IAM gets the policies exactly as the page words them.
        iam = moto_s3.client("iam")
        name = argument(create, "--role-name")
        assert name == f"export-{tag}"
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=argument(create, "--assume-role-policy-document"))
        iam.put_role_policy(
            RoleName=argument(policy, "--role-name"),
            PolicyName=argument(policy, "--policy-name"),
            PolicyDocument=argument(policy, "--policy-document"),
        )
        verified = browser.submit(
            refused, wizard_path(refused), {**_form(refused), "region": REGION, "action": "verify"}
        )
        assert verified.notice().endswith("was written and deleted."), verified.alert()
        done = launched(browser, verified)
        assert "keyless feed launched" in done.notice()
        assert bodies and all(b["role_arn"] == role_arn and "access_key_id" not in b for b in bodies)
        (item,) = call(kctx, "integrations_list", account="acme").body["integrations"]
        opened = opened_destination(kctx, item["id"])
        assert opened["role_arn"] == role_arn and opened["access_key_id"] is opened["secret_access_key"] is None
        # Editing opens the way it was created with, filled in.
        edit = browser.submit(done, f"/console/accounts/acme/integrations/{item['id']}/edit", {})
        assert method(edit) == "Keyless (recommended)" and inputs(edit)["role_arn"] == role_arn


def test_a_refused_keyless_field_keeps_the_others_and_reads_as_labelled(kctx, moto_s3):
    with console(kctx) as browser:
        page = start(browser, "s3")
        given = {"auth": "keyless", "bucket": "acme-exports", "region": REGION, "prefix": "p/", "action": "save"}
        empty = browser.submit(page, wizard_path(page), given)
        assert empty.status == 400 and empty.alert() == "Authentication failed. Role ARN: is required."
        wrong = browser.submit(empty, wizard_path(empty), {**given, "role_arn": "role/export"})
        assert wrong.status == 400
        assert wrong.alert().startswith("Authentication failed. Role ARN: must be an IAM role ARN"), wrong.alert()
        assert inputs(wrong) == {
            "region": REGION,
            "role_arn": "role/export",
            "bucket": "acme-exports",
            "endpoint_url": "",
            "prefix": "p/",
        }
        assert method(wrong) == "Keyless (recommended)"


def test_the_key_form_stays_and_an_edit_moves_it_to_keyless(kctx, platform, moto_s3, s3, tag):
    with console(kctx) as browser:
        page = start(browser, "s3")
        keyed = browser.get(wizard_path(page) + "?auth=key")
        assert method(keyed) == "With a key" and 'name="secret_access_key"' in keyed.text
        assert '<section class="grant"' not in keyed.text
        body = {k: v for k, v in s3.body().items() if k != "type"}
        done = launched(browser, browser.submit(keyed, wizard_path(keyed), {"auth": "key", **body, "action": "verify"}))
        assert "keyless feed launched" in done.notice(), done.alert()
        (item,) = call(kctx, "integrations_list", account="acme").body["integrations"]
        assert opened_destination(kctx, item["id"])["secret_access_key"] == s3.key["secret_access_key"]
        edit = browser.submit(done, f"/console/accounts/acme/integrations/{item['id']}/edit", {})
        assert method(edit) == "With a key" and "Leave empty to keep it." in edit.text
        assert s3.key["secret_access_key"] not in edit.text and s3.key["access_key_id"] not in edit.text
        # The same integration, now by a role on its bucket: the stored key is dropped, nothing secret stays.
        kit = make_role_kit(moto_s3, platform, kctx.identity("acme")["aws"]["external_id"], tag + "r", ["s3:*"])
        keyless = browser.get(wizard_path(edit) + "?auth=keyless")
        assert method(keyless) == "Keyless (recommended)" and inputs(keyless)["bucket"] == s3.bucket
        form = {**_form(keyless), "bucket": kit.bucket, "role_arn": kit.role_arn, "endpoint_url": moto_s3.url}
        configure = browser.submit(keyless, wizard_path(keyless), {**form, "action": "save"})
        assert ">Configure</h2>" in configure.text, configure.alert()
        saved_page = browser.get(wizard_path(configure).replace("/configure", "/launch"))
        saved = browser.submit(saved_page, wizard_path(saved_page), LAUNCH)
        assert "keyless feed saved" in saved.notice(), saved.alert()
        opened = opened_destination(kctx, item["id"])
        assert opened["role_arn"] == kit.role_arn and opened["access_key_id"] is opened["secret_access_key"] is None


def test_a_cloud_the_operator_has_not_set_up_opens_the_key_form(alice):
    """Without EXPORT_AWS_PRINCIPAL_ARN nothing could be granted: the key form is first, the keyless one says why."""
    page = start(alice, "s3")
    assert method(page) == "With a key" and 'name="access_key_id"' in page.text
    keyless = alice.get(wizard_path(page) + "?auth=keyless")
    assert method(keyless) == "Keyless (recommended)"
    assert "Keyless access to Amazon S3 is not set up on this service yet." in unescape(keyless.text)
    assert commands(keyless) == []


# ------------------------------------------------------------------ Azure by Entra ID


def test_keyless_azure_blob_through_the_console(entra_ctx, entra_kit, oauth_servers, monkeypatch):
    ctx, container, entra = entra_ctx, entra_kit.container, oauth_servers[1]
    azurite = entra_kit.azurite
    with console(ctx) as browser:
        bodies = verified_bodies(ctx, monkeypatch)
        page = start(browser)
        assert method(page) == "Keyless (recommended)" and 'name="connection_string"' not in page.text
        assert shown_identity(page) == {
            "Platform application (client ID)": APP_ID,
            "Role to assign": "Storage Blob Data Contributor",
        }
        assert commands(page)[0] == f"az ad sp create --id {APP_ID}"
        assert "--assignee " + APP_ID in commands(page)[1] and "containers/CONTAINER" in commands(page)[1]
        given = {"account_url": azurite.blob_url, "tenant_id": CUSTOMER_TENANT, "container": container.container_name}
        filled = browser.submit(
            page, wizard_path(page), {"auth": "keyless", **given, "prefix": "insider/", "action": "verify"}
        )
        assert filled.notice().endswith("was written and deleted."), filled.alert()
        assert entra.issued and entra.issued[-1][0] == CUSTOMER_TENANT, "signed in to the customer's tenant"
        assert f"containers/{container.container_name}" in commands(filled)[1]
        done = launched(browser, filled)
        assert "keyless feed launched" in done.notice(), done.alert()
        assert bodies and all("connection_string" not in b and b["tenant_id"] == CUSTOMER_TENANT for b in bodies)
        (item,) = call(ctx, "integrations_list", account="acme").body["integrations"]
        assert opened_destination(ctx, item["id"]) == {"account_url": azurite.blob_url, "tenant_id": CUSTOMER_TENANT}
        edit = browser.submit(done, f"/console/accounts/acme/integrations/{item['id']}/edit", {})
        assert method(edit) == "Keyless (recommended)" and inputs(edit)["tenant_id"] == CUSTOMER_TENANT


# ------------------------------------------------------------------ GCS by the platform's identity


def test_keyless_gcs_through_the_console_impersonating_then_not(
    tmp_path, monkeypatch, settings, clock, gcs_emulator, tag
):
    federation, configured = google_platform(tmp_path, monkeypatch, settings)
    try:
        ctx = Context.create(configured, clock)
        bucket = new_bucket_name(tag)
        gcs_emulator.client().create_bucket(bucket)
        with console(ctx) as browser:
            bodies = verified_bodies(ctx, monkeypatch)
            page = start(browser, "gcs")
            assert method(page) == "Keyless (recommended)" and 'name="service_account_key"' not in page.text
            assert shown_identity(page) == {"Platform service account": PLATFORM_SA}
            assert f"--member=serviceAccount:{PLATFORM_SA} --role=roles/storage.objectAdmin" in commands(page)[0]
            given = {"bucket": bucket, "impersonate": CUSTOMER_SA, "endpoint_url": gcs_emulator.url}
            filled = browser.submit(
                page, wizard_path(page), {"auth": "keyless", **given, "prefix": "", "action": "verify"}
            )
            assert filled.notice().endswith("was written and deleted."), filled.alert()
            assert CUSTOMER_SA in [email for email, _ in federation.impersonated], (
                "the customer's account, impersonated"
            )
            assert commands(filled)[1].startswith(f"gcloud iam service-accounts add-iam-policy-binding {CUSTOMER_SA}")
            done = launched(browser, filled)
            assert "keyless feed launched" in done.notice(), done.alert()
            assert bodies and all(
                b.get("impersonate") == CUSTOMER_SA and "service_account_key" not in b for b in bodies
            )
            (item,) = call(ctx, "integrations_list", account="acme").body["integrations"]
            opened = opened_destination(ctx, item["id"])
            assert opened == {"service_account_key": None, "endpoint_url": gcs_emulator.url, "impersonate": CUSTOMER_SA}
            # Edited to the platform's own identity: the field emptied is no one to impersonate any more.
            edit = browser.submit(done, f"/console/accounts/acme/integrations/{item['id']}/edit", {})
            assert method(edit) == "Keyless (recommended)" and inputs(edit)["impersonate"] == CUSTOMER_SA
            configure = browser.submit(edit, wizard_path(edit), {**_form(edit), "impersonate": "", "action": "save"})
            assert ">Configure</h2>" in configure.text, configure.alert()
            launch = browser.get(wizard_path(configure).replace("/configure", "/launch"))
            assert "keyless feed saved" in browser.submit(launch, wizard_path(launch), LAUNCH).notice()
            assert opened_destination(ctx, item["id"])["impersonate"] is None
    finally:
        federation.stop()
