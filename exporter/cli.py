"""The operator CLI, `python -m exporter`: the same operations as the HTTP API, JSON on stdout.

Exit codes: 0 done, 1 refused (the JSON error is on stdout), 2 bad usage, 3 server-side failure.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from azure.core.exceptions import AzureError

from . import api, logs
from .clock import ManualClock, SystemClock, parse_instant
from .errors import ExporterError, InputError

EXAMPLES = {
    "ucd upsert": "python -m exporter ucd upsert --account acme events.json",
    "ucd delete-user": "python -m exporter ucd delete-user --account acme user-42",
    "ucd catalog": "python -m exporter ucd catalog --account acme",
    "integrations verify": "python -m exporter integrations verify --account acme destination.json",
    "integrations create": "python -m exporter integrations create --account acme integration.json",
    "integrations list": "python -m exporter integrations list --account acme",
    "integrations show": "python -m exporter integrations show --account acme 3f9c0a1b2c3d",
    "integrations update": "echo '{\"frequency_hours\": 6}' | python -m exporter integrations update --account acme 3f9c0a1b2c3d -",
    "integrations pause": "python -m exporter integrations pause --account acme 3f9c0a1b2c3d",
    "integrations resume": "python -m exporter integrations resume --account acme 3f9c0a1b2c3d",
    "integrations delete": "python -m exporter integrations delete --account acme 3f9c0a1b2c3d",
    "integrations runs": "python -m exporter integrations runs --account acme 3f9c0a1b2c3d --format table",
    "integrations replay": "python -m exporter integrations replay --account acme 3f9c0a1b2c3d --start 1795860000",
    "tick": "python -m exporter tick --now 2026-11-28T12:05:00Z",
    "serve": "python -m exporter serve --port 7071",
    "demo": "python -m exporter demo --hours 6",
    "secret-key": "python -m exporter secret-key",
}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """Usage errors answer in JSON on stdout too, like every refusal."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def load_local_settings(path: Path = Path("local.settings.json")) -> None:
    """Like `func start`: take the Values of local.settings.json for settings not already in the environment."""
    if path.exists():
        values = json.loads(path.read_text()).get("Values", {})
        for key, value in values.items():
            os.environ.setdefault(key, str(value))


def build_parser() -> argparse.ArgumentParser:
    now_help = "run as if at this ISO 8601 time (simulation and tests); default: the real clock"
    common = Parser(add_help=False)
    # SUPPRESS: a verb's own default must not erase a --now given before the verb.
    common.add_argument("--now", default=argparse.SUPPRESS, help=now_help)
    account = Parser(add_help=False)
    account.add_argument("--account", required=True, help="the account name (lowercase letters, digits, '-')")
    body = Parser(add_help=False)
    body.add_argument("file", nargs="?", default="-", help="JSON body file, or - for standard input (default)")
    ident = Parser(add_help=False)
    ident.add_argument("id", help="the integration id")

    root = Parser(prog="python -m exporter", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root.add_argument("--now", default=None, help=now_help)
    verbs = root.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(parent, name, help_text, parents, key):
        return parent.add_parser(
            name, help=help_text, description=help_text, parents=[common, *parents],
            epilog=f"example:\n  {EXAMPLES[key]}", formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    ucd = verbs.add_parser("ucd", help="the user content database").add_subparsers(dest="action", required=True, metavar="ACTION")
    verb(ucd, "upsert", "store users and events; answers received/stored/duplicate counts", [account, body], "ucd upsert")
    delete_user = verb(ucd, "delete-user", "tombstone a user profile (stored events stay)", [account], "ucd delete-user")
    delete_user.add_argument("user_id")
    verb(ucd, "catalog", "event names with parameter keys, and attribute keys", [account], "ucd catalog")

    integ = verbs.add_parser("integrations", help="manage export integrations").add_subparsers(dest="action", required=True, metavar="ACTION")
    verb(integ, "verify", "verify a destination: write a test file and try to delete it", [account, body], "integrations verify")
    verb(integ, "create", "create an integration (the destination is verified first)", [account, body], "integrations create")
    verb(integ, "list", "list an account's integrations", [account], "integrations list")
    verb(integ, "show", "show one integration", [account, ident], "integrations show")
    update = verb(integ, "update", "change an integration (credentials are verified first)", [account, ident, body], "integrations update")
    update.add_argument("--if-match", help="refuse the change if the integration's ETag is no longer this")
    verb(integ, "pause", "pause delivery", [account, ident], "integrations pause")
    verb(integ, "resume", "resume delivery; catches up from the last delivered window", [account, ident], "integrations resume")
    verb(integ, "delete", "delete an integration and free its slot", [account, ident], "integrations delete")
    runs = verb(integ, "runs", "run history: one record per exported window, newest first", [account, ident], "integrations runs")
    runs.add_argument("--limit", type=int, default=100)
    runs.add_argument("--format", choices=("json", "table"), default="json")

    replay = verb(integ, "replay", "re-export one delivered window under the same name with the same bytes", [account, ident], "integrations replay")
    replay.add_argument("--start", type=int, required=True, help="the window's start, Unix seconds (see `runs`)")

    verb(verbs, "tick", "run the scheduler once, then process queued jobs until none is left", [], "tick")
    serve = verb(verbs, "serve", "local stand-in for the Functions host: HTTP API, timer and queue worker", [], "serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--timer-seconds", type=float, default=60.0)
    demo = verb(verbs, "demo", "a demo export end to end on a private Azurite", [], "demo")
    demo.add_argument("--hours", type=int, default=6)
    demo.add_argument("--users", type=int, default=200)
    verb(verbs, "secret-key", "print a new key for EXPORT_SECRET_KEY", [], "secret-key")
    return root


OPERATIONS = {
    ("ucd", "upsert"): "ucd_upsert",
    ("ucd", "delete-user"): "ucd_delete_user",
    ("ucd", "catalog"): "ucd_catalog",
    ("integrations", "verify"): "integrations_verify",
    ("integrations", "create"): "integrations_create",
    ("integrations", "list"): "integrations_list",
    ("integrations", "show"): "integrations_show",
    ("integrations", "update"): "integrations_update",
    ("integrations", "pause"): "integrations_pause",
    ("integrations", "resume"): "integrations_resume",
    ("integrations", "delete"): "integrations_delete",
    ("integrations", "runs"): "integrations_runs",
    ("integrations", "replay"): "integrations_replay",
}
WITH_BODY = {"ucd_upsert", "integrations_verify", "integrations_create", "integrations_update"}


def _read_body(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {name!r}: {error.strerror}", field="file") from None


def _print(body: Any) -> None:
    sys.stdout.write(json.dumps(body, indent=2) + "\n")


def _clock(args):
    return ManualClock(parse_instant(args.now, "--now")) if args.now else SystemClock()


def main(argv: Sequence[str] | None = None) -> int:
    # A person at a terminal gets progress bars and the JSON answer; per-window log lines would
    # tear the bar apart, so they are shown when stderr is a file or a pipe (CI, cron, log shipping).
    logs.configure(logging.WARNING if sys.stderr.isatty() else logging.INFO)
    load_local_settings()
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        _print({"error": {"code": "usage", "message": str(error)}})
        return 2
    try:
        return _run(args)
    except ExporterError as error:
        _print(error.to_json())
        return api.exit_code(api.http_status(error))
    except AzureError as error:
        _print({"error": {"code": "storage_unavailable", "message": (
            f"the app's storage (AzureWebJobsStorage) failed or cannot be reached ({type(error).__name__}); "
            "is Azurite running? (python -m exporter.devstorage starts one)")}})
        return 3


def _run(args) -> int:
    from .context import Context

    if args.verb == "secret-key":
        from .secrets import new_key

        _print({"EXPORT_SECRET_KEY": new_key()})
        return 0
    if args.verb == "demo":
        from .demo import run_demo

        return run_demo(hours=args.hours, users=args.users, now=args.now)
    clock = _clock(args)
    if args.verb == "serve":
        from .serve import serve

        return serve(args.host, args.port, args.timer_seconds)
    ctx = Context.create(clock=clock)
    if args.verb == "tick":
        from .host import tick
        from .progress import Progress

        _print(tick(ctx, progress=lambda total: Progress("exporting windows", total)))
        return 0
    operation = OPERATIONS[(args.verb, args.action)]
    params = {"account": args.account}
    if hasattr(args, "id"):
        params["id"] = args.id
    if hasattr(args, "user_id"):
        params["user_id"] = args.user_id
    request = api.ApiRequest(params=params)
    if operation in WITH_BODY:
        request.body = _read_body(args.file)
    if getattr(args, "if_match", None):
        request.headers["If-Match"] = args.if_match
    if operation == "integrations_runs":
        request.query["limit"] = str(args.limit)
    if operation == "integrations_replay":
        request.body = json.dumps({"start": args.start}).encode()
    answer = api.handle(ctx, operation, request)
    if operation == "integrations_runs" and args.format == "table" and answer.status < 400:
        from .progress import runs_table

        sys.stdout.write(runs_table(answer.body["runs"]))
    else:
        _print(answer.body)
    return api.exit_code(answer.status)
