"""Launch once, in a real browser: the browser's Back then Launch again, a stale copy of the Launch step,
a double click on Launch and a reload after it make one integration; the page after a second Launch says
it was launched already and links to it; the "launched" message shows once; no request of any page
answers 404 (the favicon)."""

# ruff: noqa: F811 - the fixtures `host` and `visit` are imported from tests/browser_helpers.py

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect

from exporter.console import launch
from tests.browser_helpers import (  # noqa: F401
    Visit,
    authentication,
    host,
    visit,
)
from tests.helpers import call

# A browser / subprocess test: the quick loop (-m "not slow") leaves it out; the full command runs it.
pytestmark = pytest.mark.slow


def to_launch_step(v: Visit, azurite_connection: str, container: str) -> None:
    authentication(v, azurite_connection, container)
    v.page.get_by_role("button", name="Save and Continue").click()
    v.page.get_by_role("checkbox", name="purchase", exact=True).check()
    v.page.get_by_role("button", name="Save and Continue").click()
    expect(v.page.get_by_role("heading", name="Launch")).to_be_visible()
    v.page.get_by_label("Integration Name").fill("warehouse feed")


def failed_requests(v: Visit) -> list[str]:
    """Every response of 400 or more the browser gets from now on (a missing favicon would be one per page)."""
    failed: list[str] = []
    v.page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return failed


def listed(ctx) -> list[dict]:
    return call(ctx, "integrations_list", account="acme").body["integrations"]


def test_back_then_launch_again_and_a_stale_launch_step_make_one_integration(
    visit, ctx, azurite_connection, customer_container
):
    v = visit("alice")
    failed = failed_requests(v)
    to_launch_step(v, azurite_connection, customer_container.container_name)
    stale = v.context.new_page()  # the same Launch step in a second tab: what a cached page offers
    stale.goto(v.page.url)
    stale.get_by_label("Integration Name").fill("warehouse feed")
    v.page.get_by_role("button", name="Launch").click()
    expect(v.page.get_by_role("status")).to_contain_text("warehouse feed launched")
    v.page.go_back()
    # Back shows the Launch step again, or (fetched again) that it was launched: Launch, if it is offered.
    launch_again = v.page.get_by_role("button", name="Launch")
    already = v.page.get_by_role("heading", name="Already launched")
    expect(launch_again.or_(already)).to_be_visible()
    if launch_again.is_visible():
        launch_again.click()
    expect(already).to_be_visible()
    v.check("back-then-launch")
    stale.get_by_role("button", name="Launch").click()
    expect(stale.get_by_role("heading", name="Already launched")).to_be_visible()
    (item,) = listed(ctx)
    stale.get_by_role("link", name="Go to warehouse feed").click()
    expect(stale).to_have_url(re.compile(f"/console/accounts/acme#h-{item['id']}$"))
    expect(stale.get_by_text("1 of 5 destinations used")).to_be_visible()
    assert failed == []


def test_a_double_click_on_launch_makes_one_integration(
    visit, ctx, azurite_connection, customer_container, monkeypatch
):
    """The second click lands while the first Launch is still being answered (held until the second arrives)."""
    v = visit("alice")
    to_launch_step(v, azurite_connection, customer_container.container_name)
    second_arrived = threading.Event()
    arrivals: list[int] = []
    submit = launch.submit

    def held(visit, draft):
        arrivals.append(len(arrivals))
        if len(arrivals) == 1:
            second_arrived.wait(20)
        else:
            second_arrived.set()
        return submit(visit, draft)

    monkeypatch.setattr(launch, "submit", held)
    posts: list[str] = []
    v.page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    box = v.page.get_by_role("button", name="Launch").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    with v.page.expect_request(lambda r: r.method == "POST"):
        v.page.mouse.click(x, y)  # the mouse itself: a locator's click would wait for the first navigation
    v.page.mouse.click(x, y)
    launched = v.page.get_by_role("status").filter(has_text="warehouse feed launched")
    expect(launched.or_(v.page.get_by_role("heading", name="Already launched"))).to_be_visible()
    assert len(posts) == 2 and all(p.endswith("/launch") for p in posts) and len(arrivals) == 2  # both were sent
    assert len(listed(ctx)) == 1
    v.page.goto(v.base + "/accounts/acme")
    expect(v.page.get_by_text("1 of 5 destinations used")).to_be_visible()


def test_a_reload_after_launch_neither_launches_again_nor_repeats_the_message(
    visit, ctx, azurite_connection, customer_container
):
    v = visit("alice")
    failed = failed_requests(v)
    to_launch_step(v, azurite_connection, customer_container.container_name)
    v.page.get_by_role("button", name="Launch").click()
    expect(v.page.get_by_role("status")).to_contain_text("Its first file, for 2026-11-28 10:00 to 2026-11-28 11:00 UTC")
    section = v.page.get_by_role("region", name="warehouse feed")
    expect(section.get_by_text(customer_container.container_name, exact=True)).to_be_visible()
    expect(section.get_by_text("at about 2026-11-28 11:02 UTC", exact=False)).to_be_visible()
    v.check("integrations-after-launch")
    v.page.reload()
    expect(v.page.get_by_role("heading", name="warehouse feed")).to_be_visible()
    expect(v.page.get_by_role("status")).to_have_count(0)
    v.check("integrations-reloaded")
    assert len(listed(ctx)) == 1 and failed == []
