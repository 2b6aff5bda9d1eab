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
