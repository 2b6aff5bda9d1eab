"""The browser tests' `serve` on Azurite with alice and mallory as members, and a `Visit`: one signed-in user
(a browser context of its own on the shared Chromium, tests/browser_kit.py) whose every page is checked by
axe-core and screenshotted. The fixtures `host` and `visit` are imported by the tests."""

from __future__ import annotations

import json

import pytest

from exporter.local.serve import LocalHost
from exporter.members import MemberRepo
from tests.browser_kit import AXE, ROOT
from tests.console_helpers import HOSTILE_ATTRIBUTE, HOSTILE_EVENT, HOSTILE_PARAM
from tests.helpers import call

SHOTS = ROOT / "screenshots"


@pytest.fixture
def host(ctx):
    members = MemberRepo(ctx.storage, ctx.clock)
    members.add("acme", "alice")
    members.add("other", "mallory")
    events = [
        {
            "event_name": "purchase",
            "timestamp": "2026-11-28T09:00:00Z",
            "event_params": {"price": 3, "currency": "EUR"},
        },
        {"event_name": "email_open", "timestamp": "2026-11-28T09:00:00Z", "event_params": {"campaign": "c1"}},
        {"event_name": HOSTILE_EVENT, "timestamp": "2026-11-28T09:00:00Z", "event_params": {HOSTILE_PARAM: 1}},
    ]
    user = {"user_id": "u1", "attributes": {"email": "a@x.org", HOSTILE_ATTRIBUTE: "v"}, "events": events}
    assert call(ctx, "ucd_upsert", {"users": [user]}, account="acme").status == 200
    local = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, dev_sign_in=True).start()
    yield local
    local.stop()


class Visit:
    """One browser context (one user) on the console: pages checked by axe, screenshots by name."""

    def __init__(self, chromium, host, name: str):
        self.context = chromium.new_context(viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.base = host.console_url
        self.name = name
        self.dialogs: list[str] = []
        self.csp_errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on(
            "console",
            lambda m: self.csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
        )

    def goto(self, path: str = "") -> None:
        self.page.goto(self.base + path)

    def check(self, step: str) -> None:
        """axe-core on the page (no serious or critical violation), no script ran from data, a screenshot."""
        self.page.evaluate(AXE.read_text())  # evaluated through the DevTools protocol: the page's CSP stays strict
        violations = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))"
        )
        assert violations == [], json.dumps(violations, indent=1)
        assert self.dialogs == [] and self.csp_errors == []
        SHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{self.name}-{step}.png"), full_page=True)

    def sign_in(self, user: str) -> None:
        self.goto()
        self.page.get_by_label("User name").fill(user)
        self.check("sign-in")
        self.page.get_by_role("button", name="Sign in").click()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(chromium, host, request):
    visits: list[Visit] = []

    def make(user: str) -> Visit:
        v = Visit(chromium, host, f"{request.node.name}-{user}")
        v.sign_in(user)
        visits.append(v)
        return v

    yield make
    for v in visits:
        v.close()


def authentication(v: Visit, connection: str, container: str) -> None:
    page = v.page
    page.get_by_role("link", name="New integration").click()
    page.get_by_role("button", name="Microsoft Azure Blob Storage").click()
    page.get_by_label("Connection String").fill(connection)
    page.get_by_label("Container Name").fill(container)
    page.get_by_label("Blob Path Prefix").fill("insider/")


def configure_and_launch(v: Visit, name: str, status: str = "Active", step_shots: bool = False) -> None:
    page = v.page
    page.get_by_role("checkbox", name="purchase", exact=True).check()
    page.get_by_role("group", name="Event Parameters: purchase").get_by_label("price").check()
    page.get_by_role("group", name="Attributes").get_by_label("email", exact=True).check()
    if step_shots:
        v.check("configure")
    page.get_by_role("button", name="Save and Continue").click()
    page.get_by_label("Integration Name").fill(name)
    page.get_by_label("Sync Frequency").select_option(label="every 1 hour")
    page.get_by_label("File Format").select_option(label="Parquet")
    page.get_by_role("group", name="Activation Status").get_by_label(status).check()
    if step_shots:
        v.check("launch")
    page.get_by_role("button", name="Launch" if status == "Active" else "Save as Paused").click()
