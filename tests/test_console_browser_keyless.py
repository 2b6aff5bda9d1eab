"""The keyless form in a real browser (Chromium, Playwright): a new Amazon S3 integration opens on "Keyless
(recommended)" with the platform's identity for the account and the commands to grant it, copyable with the
button the script adds; "With a key" and back switch the form; every page passes axe."""

# ruff: noqa: F811 - the fixture `visit` (tests/browser_helpers.py), `platform` and `kctx`
# (tests/test_keyless_s3.py) are imported, then requested

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from exporter.local.serve import LocalHost
from exporter.members import MemberRepo
from tests.browser_helpers import visit  # noqa: F401
from tests.destination_helpers import new_bucket_name
from tests.helpers import call
from tests.test_keyless_s3 import kctx, platform  # noqa: F401

# A browser test: the quick loop (-m "not slow") leaves it out; the full command runs it.
pytestmark = pytest.mark.slow


@pytest.fixture
def host(kctx):
    """`serve` with the platform's AWS identity configured; alice a member of acme, mallory of other."""
    members = MemberRepo(kctx.storage, kctx.clock)
    members.add("acme", "alice")
    members.add("other", "mallory")
    user = {"user_id": "u1", "events": [{"event_name": "purchase", "timestamp": "2026-11-28T09:00:00Z"}]}
    assert call(kctx, "ucd_upsert", {"users": [user]}, account="acme").status == 200
    local = LocalHost(kctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, dev_sign_in=True).start()
    yield local
    local.stop()


def test_picking_keyless_s3_shows_the_commands_to_grant_the_platform(visit, kctx, platform, tag):
    theirs = kctx.identity("other")["aws"]["external_id"]
    v = visit("alice")
    v.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = v.page
    page.get_by_role("link", name="New integration").click()
    page.get_by_role("button", name="Amazon S3").click()
    methods = page.get_by_role("navigation", name="How to authenticate")
    expect(methods.get_by_text("Keyless (recommended)")).to_have_attribute("aria-current", "true")
    ours = kctx.identity("acme")["aws"]["external_id"]
    grant = page.get_by_role("region", name="Grant access to the platform's identity")
    expect(grant.get_by_text(ours, exact=True)).to_be_visible()
    expect(grant.get_by_text(platform.arn, exact=True)).to_be_visible()
    create = page.locator("#command-1")
    expect(create).to_contain_text("aws iam create-role --role-name event-export")
    expect(create).to_contain_text(f'"sts:ExternalId": "{ours}"')
    expect(page.locator("#command-2")).to_contain_text("aws iam put-role-policy")
    assert theirs not in page.content()
    expect(page.get_by_label("Access Key ID")).to_have_count(0)
    v.check("keyless")
    # The script's copy button puts the command, as shown, on the clipboard.
    page.get_by_role("button", name="Copy command 1").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == create.text_content()
    # With a key, and back: the key form, then the keyless one again.
    methods.get_by_role("link", name="With a key").click()
    expect(page.get_by_label("Secret Access Key")).to_be_visible()
    expect(page.get_by_role("region", name="Grant access to the platform's identity")).to_have_count(0)
    v.check("with-a-key")
    page.get_by_role("navigation", name="How to authenticate").get_by_role("link", name="Keyless (recommended)").click()
    # What the step is given shows in the commands (Verify without a region: refused, the rest kept).
    bucket = new_bucket_name(tag)
    page.get_by_label("Bucket Name").fill(bucket)
    page.get_by_label("Role ARN").fill(f"arn:aws:iam::123456789012:role/export-{tag}")
    page.get_by_role("button", name="Verify Authentication").click()
    expect(page.get_by_role("alert")).to_have_text("Authentication failed. Region: is required.")
    expect(page.locator("#command-1")).to_contain_text(f"aws iam create-role --role-name export-{tag}")
    expect(page.locator("#command-2")).to_contain_text(f"arn:aws:s3:::{bucket}/*")
    expect(page.get_by_label("Bucket Name")).to_have_value(bucket)
    v.check("keyless-refused")
