"""The browser tests' Chromium: headless, from the OS packages, driven by Playwright, launched once per test
process (per xdist worker) and shared by every browser test; each test opens its own browser context (its own
cookies, storage and pages: `tests.browser_helpers.Visit`), so no test sees another's state. Registered by
tests/conftest.py (`pytest_plugins`)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    if not AXE.exists():
        pytest.fail("node_modules/axe-core is missing: run scripts/setup.sh (npm installs the devDependencies)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()
