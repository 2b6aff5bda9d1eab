"""The console's "Check delivery" action: a POST with the page's CSRF token; the result on the integrations page."""

# ruff: noqa: F811 - the fixtures `host` and `alice` are imported from tests/console_helpers.py, then requested

from __future__ import annotations

from exporter.jobs import schedule
from exporter.local.host import drain
from tests.console_helpers import alice, host  # noqa: F401
from tests.export_helpers import ACCOUNT, create, due_at, populate

ACCOUNT_PAGE = f"/console/accounts/{ACCOUNT}"


def test_check_delivery_says_all_is_there_then_names_a_missing_file(
    alice, ctx, clock, azurite_connection, customer_container
):
    iid = create(ctx, clock, azurite_connection, customer_container.container_name)
    populate(ctx, clock, range(2))
    clock.set(due_at(2))
    schedule(ctx)
    drain(ctx)
    page = alice.get(ACCOUNT_PAGE)
    assert "Check delivery" in page.text
    checked = alice.submit(page, f"{ACCOUNT_PAGE}/integrations/{iid}/audit", {})
    assert checked.status == 200
    assert checked.notice() == "Delivery checked: all 2 delivered windows are in the destination, unchanged."

    first = min(ctx.runs.list(ACCOUNT, iid), key=lambda r: r.window_start)
    customer_container.delete_blob(first.file)
    checked = alice.submit(page, f"{ACCOUNT_PAGE}/integrations/{iid}/audit", {})
    assert checked.alert().startswith(
        "Delivery checked: 1 problems in 2 delivered windows: missing from the destination"
    )
    assert first.file in checked.alert()
    refused = alice.submit(page, f"{ACCOUNT_PAGE}/integrations/0123456789ab/audit", {})
    assert refused.status == 404


def test_the_launch_step_takes_a_notification_url_and_the_page_shows_a_new_secret_once(
    alice, ctx, azurite_connection, customer_container, monkeypatch
):
    from exporter.notifications.config import ALLOW_PRIVATE
    from tests.console_helpers import wizard_path
    from tests.test_console_customer import LAUNCH, to_launch

    monkeypatch.setenv(ALLOW_PRIVATE, "true")
    page = to_launch(alice, azurite_connection, customer_container.container_name)
    assert 'name="notify_url"' in page.text
    url = "http://127.0.0.1:9/hooks"
    done = alice.submit(page, wizard_path(page), {**LAUNCH, "notify_url": url})
    assert done.status == 200, done.text
    [item] = ctx.integrations.list(ACCOUNT)["integrations"]
    assert item["notify"] == {"url": url, "events": ["stopped", "recovered", "delivered"]}
    assert f"<dt>Notifications</dt><dd>{url}: nothing sent yet</dd>" in alice.get(ACCOUNT_PAGE).text
    assert "whsec_" not in done.text, "the create's secret is not kept in the draft"
    shown = alice.submit(done, f"{ACCOUNT_PAGE}/integrations/{item['id']}/notify-secret", {})
    secret = shown.notice().split(": ", 1)[1].split(" ", 1)[0]
    assert secret.startswith("whsec_") and url in shown.text
    assert secret not in alice.get(ACCOUNT_PAGE).text, "shown once"
