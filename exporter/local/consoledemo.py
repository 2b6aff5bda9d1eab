"""`python -m exporter demo --console` (`bash scripts/demo.sh --console`): the console, ready to try locally.

Starts a private Azurite, moto (S3, IAM enforced) and gcp-storage-emulator with a loopback token
endpoint; makes the customer's container and buckets with credentials allowed to write into them
(demotargets.py); adds a member and stores an hour of sample events (so Configure offers events,
parameters and attributes); then runs `python -m exporter serve --dev-sign-in` on that storage with
private endpoints allowed, and prints the URL, the user name to sign in with and what to paste in each
field for each destination type. It runs until Ctrl-C (or SIGTERM), then stops every server it started.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .. import api
from ..console.fields import fields_of, type_name
from ..context import Context
from ..destinations import DESTINATION_KINDS, destination_types
from ..secrets import new_key
from ..settings import Settings
from .cloudservers import _stop
from .demo import ACCOUNT, sample_hour
from .demotargets import DemoTarget, open_demo_target
from .devstorage import free_port, start_azurite

USER = "demo@example.com"
READY_SECONDS = 60.0  # how long serve may take to answer its first request
log = logging.getLogger(__name__)


def say(text: str = "") -> None:
    print(text, flush=True)


def serve_environment(connection: str, secret_key: str) -> dict[str, str]:
    """`serve`'s settings: the demo's storage, a key of its own, the development sign-in, local endpoints allowed."""
    return {
        **os.environ,
        "AzureWebJobsStorage": connection,
        "EXPORT_SECRET_KEY": secret_key,
        "EXPORT_CONSOLE_DEV_SIGN_IN": "true",
        # Azurite, moto and the GCS emulator listen on loopback over http: the egress policy refuses both
        # unless this is on. Local and CI only; never in infra/.
        "EXPORT_ALLOW_PRIVATE_ENDPOINTS": "true",
    }


def field_lines(target: DemoTarget) -> list[str]:
    """What to paste, field by field, labelled as the wizard's Authentication step labels them."""
    lines = []
    for f in fields_of(DESTINATION_KINDS[target.kind]):
        value = target.body.get(f.name)
        if value in (None, ""):
            continue
        lines.append(f"  {f.label}: {json.dumps(value) if isinstance(value, dict) else value}")
    return lines


def run_console_demo(port: int = 7071, users: int = 60) -> int:
    """Start everything, print the instructions, serve until interrupted; 0 after Ctrl-C, 1 if serve stopped."""
    stops: list[Callable[[], None]] = []
    # Ctrl-C and `kill` stop every server with it; SIGINT explicitly too: a shell's background job ignores it.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        say("Starting a private Azurite, moto (S3) and the GCS emulator with its token endpoint ...")
        azurite = start_azurite()
        stops.append(azurite.stop)
        targets = []
        for kind in destination_types():
            target = open_demo_target(kind, azurite.connection_string)
            stops.append(target.stop)
            targets.append(target)
        env = serve_environment(azurite.connection_string, new_key())
        _prepare(Settings.from_env(env), users)
        serve, url, serve_log = _start_serve(env, port or free_port())
        stops.append(lambda: _stop(serve))
        _instructions(url, targets, serve_log)
        code = serve.wait()
        say(f"serve stopped by itself (exit code {code}); its log: {serve_log}")
        return 1
    except KeyboardInterrupt:
        say("\nStopping ...")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stopping short
        for stop in reversed(stops):
            try:
                stop()
            except Exception as error:  # noqa: BLE001 - stop the others anyway, and say which one failed
                say(f"could not stop a server cleanly ({type(error).__name__})")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        say("Stopped.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _prepare(settings: Settings, users: int) -> None:
    """The member, and an hour of sample events stored now (the catalog the Configure step offers)."""
    ctx = Context.create(settings)
    _call(ctx, "members_add", account=ACCOUNT, user=USER)
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    stored = _call(ctx, "ucd_upsert", sample_hour(random.Random(7), users, hour), account=ACCOUNT)
    say(f"Stored {stored['stored_events']} sample events of account {ACCOUNT}; {USER} may manage it.")


def _call(ctx: Context, operation: str, body: object = None, **params: str) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    answer = api.handle(ctx, operation, api.ApiRequest(params=params, body=raw))
    if answer.status >= 400:
        raise SystemExit(f"demo: {operation} refused: {json.dumps(answer.body)}")
    return answer.body


def _start_serve(env: dict[str, str], port: int) -> tuple[subprocess.Popen, str, Path]:
    """`python -m exporter serve --dev-sign-in` on `port`, once it answers; its output goes to a log file."""
    serve_log = Path(tempfile.mkdtemp(prefix="exporter-console-demo-")) / "serve.log"
    args = [sys.executable, "-m", "exporter", "serve", "--port", str(port), "--dev-sign-in"]
    with serve_log.open("wb") as out:
        # Its own session: a Ctrl-C in the terminal reaches the demo only, which then stops serve itself.
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/console"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: serve exited at start (exit code {process.returncode}); see {serve_log}")
        if _answers(url + "/sign-in"):
            return process, url, serve_log
        time.sleep(0.2)
    _stop(process)
    raise SystemExit(f"demo: serve did not answer within {READY_SECONDS:g} s; see {serve_log}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _instructions(url: str, targets: list[DemoTarget], serve_log: Path) -> None:
    say(f"\nThe console is ready: {url}")
    say(f"Sign in with the user name: {USER}")
    say(f"(account {ACCOUNT}; serve's log: {serve_log})")
    say("\nThen New integration, and for each destination type paste these values:")
    for target in targets:
        say(f"\n{type_name(target.kind)}: {target.where}")
        for line in field_lines(target):
            say(line)
    say("\nWindows are an hour long: the first file arrives about two minutes after the first hour ends.")
    say("Press Ctrl-C to stop; every server started here stops with it.")
