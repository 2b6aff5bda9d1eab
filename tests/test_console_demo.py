"""`python -m exporter demo --console` (what `bash scripts/demo.sh --console` runs after setup): it gets ready,
prints the URL, the user and each type's fields, and what it prints is what the wizard takes (each type
verifies through the console); Ctrl-C stops it and every server it started. Bounded: every wait has a
deadline, and the demo is killed if it does not stop."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.console_helpers import Browser, wizard_path

# A browser / subprocess test: the quick loop (-m "not slow") leaves it out; the full command runs it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
READY = "Press Ctrl-C to stop"
READY_SECONDS = 240  # Azurite, moto, the GCS emulator and serve start on a machine shared with other work
TYPES = {"azure_blob": "Microsoft Azure Blob Storage", "s3": "Amazon S3", "gcs": "Google Cloud Storage"}


def read_until_ready(process: subprocess.Popen) -> list[str]:
    """The demo's stdout lines up to the ready line (a thread reads, so a silent demo cannot hang the test)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if READY in line:
            return seen
    raise AssertionError("the demo did not get ready:\n" + "\n".join(seen))


def blocks(lines: list[str]) -> dict[str, dict[str, str]]:
    """Each destination type's heading and its "  Label: value" lines."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in lines:
        heading = next((kind for kind, name in TYPES.items() if line.startswith(f"{name}: ")), None)
        if heading:
            current = found.setdefault(heading, {})
        elif current is not None and line.startswith("  ") and ": " in line:
            label, value = line.strip().split(": ", 1)
            current[label] = value
        else:
            current = None
    return found


def listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


def test_the_console_demo_gets_ready_prints_what_to_paste_and_stops_on_ctrl_c():
    args = [sys.executable, "-m", "exporter", "demo", "--console", "--port", "0", "--users", "20"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORT_", "AzureWebJobs"))}
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = read_until_ready(process)
        text = "\n".join(lines)
        url = re.search(r"The console is ready: (http://127\.0\.0\.1:\d+/console)$", text, re.M)[1]
        user = re.search(r"Sign in with the user name: (\S+)$", text, re.M)[1]
        fields = blocks(lines)
        assert set(fields) == set(TYPES)
        assert list(fields["azure_blob"]) == ["Connection String", "Container Name", "Blob Path Prefix"]
        assert set(fields["s3"]) == {
            "Region",
            "Access Key ID",
            "Secret Access Key",
            "Bucket Name",
            "Endpoint URL",
            "Path Prefix",
        }
        assert set(fields["gcs"]) == {"Service Account Key (JSON)", "Bucket Name", "Endpoint URL", "Path Prefix"}
        azurite = re.search(r"BlobEndpoint=(http://[^;/]+)", fields["azure_blob"]["Connection String"])[1]
        servers = [azurite, fields["s3"]["Endpoint URL"], fields["gcs"]["Endpoint URL"], url]
        # What it printed is what the wizard takes: each type verifies, through the console, as pasted.
        browser = Browser(url.removesuffix("/console"))
        browser.sign_in(user)
        home = browser.get("/console")
        assert "0 of 5 destinations used" in home.text
        account = re.search(r'href="(/console/accounts/[^"/]+)/new"', home.text)[1]
        for kind, labelled in fields.items():
            page = browser.submit(browser.get(account + "/new"), account + "/new", {"type": kind})
            names = dict(re.findall(r'<label for="f-([a-z_]+)">([^<]+?)(?: <span|</label>)', page.text))
            form = {name: labelled[label] for name, label in names.items()}
            verified = browser.submit(page, wizard_path(page), {**form, "action": "verify"})
            assert "Authentication verified" in verified.notice(), (kind, verified.alert())
            configure = browser.submit(verified, wizard_path(verified), {**form, "action": "save"})
            assert "purchase" in configure.text and "add_to_cart" in configure.text  # the sample events
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        assert [s for s in servers if listening(s)] == []  # Azurite, moto, the GCS emulator and serve stopped with it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
