"""The console in a real browser: headless Chromium from the OS packages driven by Playwright, against
`serve` on Azurite. Elements are found by their accessible names (labels, roles, button texts: the
product page's words). axe-core checks every page; the wizard is also driven by the keyboard alone.

Screenshots of every step go to screenshots/ (gitignored). Without /usr/bin/chromium these tests
fail: CI installs it (.ci/run), and a console nobody tested in a browser is not a passing build.
"""

# ruff: noqa: F811 - the fixtures `host` and `visit` are imported from tests/browser_helpers.py

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from exporter.console.steps import LIMIT_REACHED
from exporter.local.host import tick
from exporter.members import MemberRepo
from tests.browser_helpers import (  # noqa: F401
    Visit,
    authentication,
    configure_and_launch,
    host,
    visit,
)
from tests.console_helpers import HOSTILE_ATTRIBUTE, HOSTILE_EVENT, HOSTILE_PARAM, sas_connection
from tests.helpers import T0, call, integration_body

# The sign-in and three-step wizard stays in the quick loop as the browser's smoke test.
pytestmark = pytest.mark.slow_tests(
    "test_a_bad_connection_string_is_explained_at_the_top_of_the_page",
    "test_a_sas_without_delete_permission_leaves_the_test_file_and_says_so",
    "test_at_the_limit_new_integration_says_so_before_anything_is_verified",
    "test_pause_resume_edit_and_a_tick_later_the_run_history",
    "test_a_second_user_who_is_not_a_member_sees_nothing_of_the_account",
    "test_the_whole_wizard_works_with_the_keyboard_alone",
    "test_the_remaining_pages_pass_axe_too",
    "test_the_accessibility_check_fails_on_a_page_with_a_serious_violation",
    "test_the_browser_enforces_the_policy_no_inline_script_runs",
)


def test_sign_in_and_create_an_azure_blob_integration_through_the_three_steps(
    visit, ctx, azurite_connection, customer_container
):
    v = visit("alice")
    page = v.page
    expect(page.get_by_text("0 of 5 destinations used")).to_be_visible()
    v.check("integrations-empty")
    authentication(v, azurite_connection, customer_container.container_name)
    expect(page.get_by_role("heading", name="Authentication")).to_be_visible()
    page.get_by_role("button", name="Verify Authentication").click()
    expect(page.get_by_role("status")).to_contain_text("Authentication verified")
    assert page.get_by_label("Connection String").input_value() == ""  # never sent back
    v.check("authentication")
    page.get_by_role("button", name="Save and Continue").click()
    expect(page.get_by_role("heading", name="Configure")).to_be_visible()
    # The hostile catalog is shown as text, and no script of it runs (dialogs are recorded by Visit).
    expect(page.get_by_role("checkbox", name=HOSTILE_EVENT)).to_be_visible()
    expect(
        page.get_by_role("group", name=f"Event Parameters: {HOSTILE_EVENT}").get_by_label(HOSTILE_PARAM)
    ).to_have_count(1)
    expect(page.get_by_role("group", name="Attributes").get_by_label(HOSTILE_ATTRIBUTE)).to_have_count(1)
    # The Event Parameters are enabled once their event is selected.
    assert page.get_by_role("group", name="Event Parameters: purchase").get_by_label("price").is_disabled()
    configure_and_launch(v, "warehouse feed", step_shots=True)
    expect(page.get_by_role("status")).to_contain_text("warehouse feed launched")
    expect(page.get_by_text("1 of 5 destinations used")).to_be_visible()
    expect(page.get_by_role("heading", name="warehouse feed")).to_be_visible()
    v.check("integrations")
    (item,) = call(ctx, "integrations_list", account="acme").body["integrations"]
    assert item["events"] == [{"name": "purchase", "params": ["price"]}] and item["attributes"] == ["email"]
    assert item["format"] == "parquet"


def test_a_bad_connection_string_is_explained_at_the_top_of_the_page(visit):
    v = visit("alice")
    authentication(v, "AccountName=x;AccountKey", "somecontainer")
    v.page.get_by_role("button", name="Verify Authentication").click()
    alert = v.page.get_by_role("alert")
    assert alert.inner_text().startswith("Authentication failed. Connection String: is malformed")
    top = v.page.evaluate("document.querySelector('main').firstElementChild.getAttribute('role')")
    assert top == "alert"
    v.check("bad-connection-string")


def test_a_sas_without_delete_permission_leaves_the_test_file_and_says_so(
    visit, azurite_connection, customer_container
):
    v = visit("alice")
    name = customer_container.container_name
    authentication(v, sas_connection(azurite_connection, name, write=True, create=True), name)
    v.page.get_by_role("button", name="Verify Authentication").click()
    status = v.page.get_by_role("status").inner_text()
    (left,) = [b.name for b in customer_container.list_blobs()]
    assert "was left in place" in status and left.split("/")[-1] in status
    v.check("sas-without-delete")


def test_at_the_limit_new_integration_says_so_before_anything_is_verified(
    visit, ctx, azurite_connection, customer_container
):
    for n in range(5):
        body = integration_body(azurite_connection, customer_container.container_name, name=f"feed {n}")
        assert call(ctx, "integrations_create", body, account="acme").status == 201
    v = visit("alice")
    expect(v.page.get_by_text("5 of 5 destinations used")).to_be_visible()
    v.page.get_by_role("link", name="New integration").click()
    expect(v.page.get_by_role("alert")).to_have_text(LIMIT_REACHED)
    expect(v.page.get_by_role("button", name="Microsoft Azure Blob Storage")).to_have_count(0)
    v.check("limit-reached")


def test_pause_resume_edit_and_a_tick_later_the_run_history(visit, ctx, clock, azurite_connection, customer_container):
    body = integration_body(azurite_connection, customer_container.container_name)
    created = call(ctx, "integrations_create", body, account="acme").body
    event = {"event_name": "purchase", "timestamp": "2026-11-28T10:10:00Z", "event_params": {"price": 9}}
    clock.set(T0 + timedelta(minutes=10))
    assert call(ctx, "ucd_upsert", {"users": [{"user_id": "u2", "events": [event]}]}, account="acme").status == 200
    v = visit("alice")
    page = v.page
    page.get_by_role("button", name="Pause warehouse feed").click()
    expect(page.get_by_role("status")).to_contain_text("Paused warehouse feed")
    v.check("paused")
    page.get_by_role("button", name="Resume warehouse feed").click()
    expect(page.get_by_role("status")).to_contain_text("Resumed warehouse feed")
    # Edit the frequency: the wizard reopens filled in; the secret stays stored, shown masked only.
    page.get_by_role("button", name="Edit warehouse feed").click()
    assert page.get_by_label("Container Name").input_value() == customer_container.container_name
    assert page.get_by_label("Connection String").input_value() == ""
    expect(page.get_by_text(re.compile(r"Stored: .*AccountKey=\*\*\*"))).to_be_visible()
    page.get_by_role("button", name="Save and Continue").click()
    assert page.get_by_role("checkbox", name="purchase", exact=True).is_checked()
    page.get_by_role("button", name="Save and Continue").click()
    page.get_by_label("Sync Frequency").select_option(label="every 2 hours")
    v.check("edit-launch")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("warehouse feed saved")
    assert call(ctx, "integrations_show", account="acme", id=created["id"]).body["frequency_hours"] == 2
    expect(page.get_by_text("No window delivered yet")).to_be_visible()
    # A tick after three two-hour windows are due: the run history shows the delivered windows.
    clock.set(T0 + timedelta(hours=6, minutes=5))
    tick(ctx)
    page.reload()
    history = page.get_by_role("table", name="Run history of warehouse feed, newest first")
    row = history.get_by_role("row", name=re.compile("2026-11-28 10:00 to 2026-11-28 12:00"))
    # The fixture's two events (stored at activation) and this one: three rows.
    expect(row).to_contain_text("exported")
    expect(row.get_by_role("cell", name="3", exact=True)).to_have_count(1)
    expect(page.get_by_text("2026-11-28 14:00 to 2026-11-28 16:00 UTC")).to_be_visible()  # the last delivered window
    expect(history.get_by_role("row")).to_have_count(4)  # the header and three windows
    expect(page.get_by_role("img", name=re.compile("Rows and bytes per window of warehouse feed"))).to_be_visible()
    v.check("run-history")
    page.get_by_role("button", name="Replay 2026-11-28 10:00 to 2026-11-28 12:00").click()
    expect(page.get_by_role("status")).to_contain_text("Replayed the window")


def test_a_second_user_who_is_not_a_member_sees_nothing_of_the_account(
    visit, ctx, azurite_connection, customer_container
):
    body = integration_body(azurite_connection, customer_container.container_name, name="secret feed")
    created = call(ctx, "integrations_create", body, account="acme").body
    v = visit("mallory")
    page = v.page
    assert "secret feed" not in page.content()
    page.goto(v.base + "/accounts/acme")
    existing = page.content().replace("acme", "X")
    expect(page.get_by_role("heading", name="Account not found")).to_be_visible()
    v.check("not-a-member")
    page.goto(v.base + "/accounts/nobody")
    assert page.content().replace("nobody", "X") == existing
    page.goto(v.base + f"/accounts/acme/integrations/{created['id']}/delete")
    expect(page.get_by_role("heading", name="Account not found")).to_be_visible()
    assert "secret feed" not in page.content()


def _tab_to(page, locator, limit: int = 120) -> None:
    """Press Tab until `locator` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if locator.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {locator}")


def test_the_whole_wizard_works_with_the_keyboard_alone(visit, ctx, azurite_connection, customer_container):
    v = visit("alice")
    page, kb = v.page, v.page.keyboard
    _tab_to(page, page.get_by_role("link", name="New integration"))
    kb.press("Enter")
    page.wait_for_url(re.compile("/new$"))
    _tab_to(page, page.get_by_role("button", name="Microsoft Azure Blob Storage"))
    kb.press("Enter")
    page.wait_for_url(re.compile("/authentication$"))
    _tab_to(page, page.get_by_label("Connection String"))
    kb.type(azurite_connection)
    _tab_to(page, page.get_by_label("Container Name"))
    kb.type(customer_container.container_name)
    _tab_to(page, page.get_by_role("button", name="Verify Authentication"))
    kb.press("Enter")
    page.get_by_role("status").wait_for()
    _tab_to(page, page.get_by_role("button", name="Save and Continue"))
    kb.press("Enter")
    page.wait_for_url(re.compile("/configure$"))
    _tab_to(page, page.get_by_role("checkbox", name="email_open"))
    kb.press("Space")
    _tab_to(page, page.get_by_role("group", name="Event Parameters: email_open").get_by_label("campaign"))
    kb.press("Space")
    _tab_to(page, page.get_by_role("button", name="Save and Continue"))
    kb.press("Enter")
    page.wait_for_url(re.compile("/launch$"))
    _tab_to(page, page.get_by_label("Sync Frequency"))
    kb.press("ArrowDown")  # every 2 hours
    _tab_to(page, page.get_by_label("Active"))
    kb.press("ArrowRight")  # the radio group moves to Paused
    expect(page.get_by_role("button", name="Save as Paused")).to_be_visible()
    _tab_to(page, page.get_by_role("button", name="Save as Paused"))
    kb.press("Enter")
    page.get_by_role("status").wait_for()
    v.check("keyboard-done")
    (item,) = call(ctx, "integrations_list", account="acme").body["integrations"]
    assert item["events"] == [{"name": "email_open", "params": ["campaign"]}]
    assert (item["frequency_hours"], item["status"]) == (2, "paused")


def test_the_remaining_pages_pass_axe_too(visit, ctx, azurite_connection, customer_container):
    """The account list, the destination type choice, the delete confirmation and an error page."""
    MemberRepo(ctx.storage, ctx.clock).add("second", "alice")
    body = integration_body(azurite_connection, customer_container.container_name)
    assert call(ctx, "integrations_create", body, account="acme").status == 201
    v = visit("alice")
    page = v.page
    expect(page.get_by_role("heading", name="Your accounts")).to_be_visible()
    v.check("accounts")
    page.get_by_role("link", name="acme").click()
    page.get_by_role("link", name="New integration").click()
    expect(page.get_by_role("group", name="Destination type")).to_be_visible()
    v.check("choose-type")
    page.goto(v.base + "/accounts/acme")
    page.get_by_role("link", name="Delete warehouse feed").click()
    expect(page.get_by_role("heading", name="Delete warehouse feed?")).to_be_visible()
    v.check("delete-confirmation")
    page.get_by_role("button", name="Delete integration").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted warehouse feed")
    expect(page.get_by_text("0 of 5 destinations used")).to_be_visible()
    page.goto(v.base + "/accounts/acme/wizard/" + "0" * 32 + "/authentication")
    expect(page.get_by_role("heading", name="Not available")).to_be_visible()
    v.check("expired-wizard")


def test_the_accessibility_check_fails_on_a_page_with_a_serious_violation(chromium, host):
    v = Visit(chromium, host, "axe-self-test")
    try:
        v.goto()
        v.page.evaluate("document.querySelector('label[for=user]').remove()")  # an input without a name
        with pytest.raises(AssertionError, match="label"):
            v.check("unlabelled")
    finally:
        v.close()


def test_the_browser_enforces_the_policy_no_inline_script_runs(chromium, host):
    v = Visit(chromium, host, "csp")
    try:
        v.goto()
        with v.page.expect_console_message(lambda m: "Content Security Policy" in m.text) as refused:
            v.page.evaluate(
                "() => { const s = document.createElement('script'); s.textContent = 'window.ran = true';"
                " document.body.appendChild(s); }"
            )
        assert "script-src" in refused.value.text
        assert v.page.evaluate("window.ran === true") is False
    finally:
        v.close()
