"""The operator CLI, `python -m exporter`: the same operations as the HTTP API, JSON on stdout.

Exit codes: 0 done, 1 refused (the JSON error is on stdout), 2 bad usage, 3 server-side failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError

from . import api, logs, routes
from .clock import ManualClock, SystemClock, parse_instant
from .destinations import destination_types
from .errors import ConfigurationError, ExporterError, InputError

# The verbs that are not operations of the API; the operations' examples are in exporter.routes.
EXAMPLES = {
    "tick": "python -m exporter tick --now 2026-11-28T12:05:00Z",
    "sweep": "python -m exporter sweep",
    "serve": "python -m exporter serve --port 7071",
    "demo": "python -m exporter demo --hours 6 --destination s3",
    "secret-key": "python -m exporter secret-key",
}
GROUPS = {
    "ucd": "the user content database",
    "integrations": "manage export integrations",
    "members": "who may manage an account in the console",
}
PARAMS = {  # route parameters: {account} is the option --account, the others are positional
    "account": "the account name (lowercase letters, digits, '-')",
    "id": "the integration id",
    "user_id": "the user's id",
    "user": "the name the user signs in to the console with (an e-mail address or user principal name)",
}
# `--format table` (runs_table): the operations whose answer holds run records, under this key.
TABLES = {"integrations_runs": "runs"}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """Usage errors answer in JSON on stdout too, like every refusal; options and positionals mix freely.

    argparse stops matching positionals once an option comes between them (`update ID --if-match E -`
    leaves `-` unrecognized). A verb's parser (a leaf: no subcommands) therefore parses intermixed:
    options first, then the positionals left over. Only leaves can: the stdlib refuses intermixed
    parsing of a parser with subcommands, and the subcommand action hands each verb its arguments
    through `parse_known_args`, which is where this hooks in.
    """

    _intermixing = False

    def error(self, message: str):
        raise UsageError(message)

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back here for each of its two passes
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def load_local_settings(path: Path = Path("local.settings.json")) -> None:
    """Like `func start`: take the Values of local.settings.json for settings not already in the environment."""
    if path.exists():
        try:
            document = json.loads(path.read_text())
        except ValueError:
            document = None
        values = document.get("Values", {}) if isinstance(document, dict) else None
        if not isinstance(values, dict):
            raise ConfigurationError(
                'is not a JSON object with a "Values" object (see local.settings.sample.json)', field=str(path)
            )
        for key, value in values.items():
            os.environ.setdefault(key, str(value))


def build_parser() -> argparse.ArgumentParser:
    now_help = "run as if at this ISO 8601 time (simulation and tests); default: the real clock"
    common = Parser(add_help=False)
    # SUPPRESS: a verb's own default must not erase a --now given before the verb.
    common.add_argument("--now", default=argparse.SUPPRESS, help=now_help)

    root = Parser(prog="python -m exporter", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root.add_argument("--now", default=None, help=now_help)
    verbs = root.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(parent, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        return parent.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common],
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    groups: dict[str, Any] = {}
    for op in routes.OPERATIONS.values():
        group, action = op.verb.split()
        if group not in groups:
            groups[group] = verbs.add_parser(group, help=GROUPS[group]).add_subparsers(
                dest="action", required=True, metavar="ACTION"
            )
        _add_operation(verb(groups[group], action, op.help, op.example), op)

    verb(verbs, "tick", "run the scheduler once, then process queued jobs until none is left", EXAMPLES["tick"])
    verb(
        verbs,
        "sweep",
        "check the due index against every integration and repair it (hourly in Azure)",
        EXAMPLES["sweep"],
    )
    serve = verb(
        verbs, "serve", "local stand-in for the Functions host: HTTP API, timer and queue worker", EXAMPLES["serve"]
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1, this machine only)"
    )
    serve.add_argument(
        "--port", type=int, default=7071, help="the HTTP port, as `func start` uses (default: 7071; 0: a free one)"
    )
    serve.add_argument(
        "--timer-seconds",
        type=float,
        default=60.0,
        help="how often the scheduler runs (default: 60, the Functions timer's every minute)",
    )
    serve.add_argument(
        "--dev-sign-in",
        action="store_true",
        help="offer the console's development sign-in at /console/sign-in (a user name, no password; "
        "also EXPORT_CONSOLE_DEV_SIGN_IN=true); never available in Azure",
    )
    demo = verb(verbs, "demo", "a demo export end to end on private local servers", EXAMPLES["demo"])
    demo.add_argument(
        "--hours", type=int, default=6, help="how many hourly windows to simulate and export (default: 6)"
    )
    demo.add_argument("--users", type=int, default=200, help="how many users send events each hour (default: 200)")
    demo.add_argument(
        "--destination",
        choices=destination_types(),
        default=destination_types()[0],
        help=f"the customer's destination type, on a private local server (default: {destination_types()[0]})",
    )
    demo.add_argument(
        "--console",
        action="store_true",
        help="instead: serve the console with the development sign-in, sample events and a container and buckets "
        "of every type ready, print what to paste in each field, and run until Ctrl-C",
    )
    demo.add_argument(
        "--port", type=int, default=7071, help="with --console: the HTTP port (default: 7071; 0: a free one)"
    )
    verb(verbs, "secret-key", "print a new key for EXPORT_SECRET_KEY", EXAMPLES["secret-key"])
    return root


def _add_operation(parser: argparse.ArgumentParser, op: routes.Operation) -> None:
    """An operation's arguments: its route parameters, FILE if it takes a body, then its options."""
    parser.set_defaults(operation=op.name)
    for param in op.params:
        if param == "account":
            parser.add_argument("--account", required=True, help=PARAMS[param])
        else:
            parser.add_argument(param, help=PARAMS[param])
    if op.body:
        parser.add_argument("file", nargs="?", default="-", help="JSON body file, or - for standard input (default)")
    for option in op.options:
        parser.add_argument(
            option.flag,
            dest=option.dest,
            type=option.type,
            default=option.default,
            required=option.required,
            help=option.help,
        )
    if op.name in TABLES:
        parser.add_argument(
            "--format", choices=("json", "table"), default="json", help="json (default), or a table for people"
        )


def _request(op: routes.Operation, args: argparse.Namespace) -> api.ApiRequest:
    """The request the HTTP route would get, from the command line."""
    request = api.ApiRequest(params={param: getattr(args, param) for param in op.params})
    if op.body:
        request.body = _read_body(args.file)
    fields = {}
    for option in op.options:
        value = getattr(args, option.dest)
        if value is None or value == "":
            continue
        if option.goes_to == "header":
            request.headers[option.key] = str(value)
        elif option.goes_to == "query":
            request.query[option.key] = str(value)
        else:
            fields[option.key] = value
    if fields:
        request.body = json.dumps(fields).encode()
    return request


def _read_body(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {name!r}: {error.strerror}", field="file") from None


def _print(body: object) -> None:
    sys.stdout.write(json.dumps(body, indent=2) + "\n")


def runs_table(runs: list[dict[str, Any]]) -> str:
    """The run history as a fixed-width table, newest first (`integrations runs --format table`)."""

    def when(unix: int) -> str:
        return datetime.fromtimestamp(unix, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")

    headers = ["window start (UTC)", "end", "status", "rows", "bytes", "ms", "tries", "file / error"]
    rows = [
        [
            when(r["window_start"]),
            when(r["window_end"]),
            r["status"],
            str(r["rows"]),
            str(r["bytes"]),
            str(r["duration_ms"]),
            str(r["attempts"]),
            r["error"] or r["file"],
        ]
        for r in runs
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines) + "\n"


def _clock(args):
    return ManualClock(parse_instant(args.now, "--now")) if args.now else SystemClock()


def main(argv: Sequence[str] | None = None) -> int:
    # A person at a terminal gets progress bars and the JSON answer; per-window log lines would
    # tear the bar apart, so they are shown when stderr is a file or a pipe (CI, cron, log shipping).
    logs.configure(logging.WARNING if sys.stderr.isatty() else logging.INFO)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        _print({"error": {"code": "usage", "message": str(error)}})
        return 2
    try:
        load_local_settings()
        return _run(args)
    except ExporterError as error:
        _print(error.to_json())
        return api.exit_code(api.http_status(error))
    except AzureError as error:
        _print(
            {
                "error": {
                    "code": "storage_unavailable",
                    "message": (
                        f"the app's storage (AzureWebJobsStorage) failed or cannot be reached ({type(error).__name__}); "
                        "is Azurite running? (python -m exporter.local.devstorage starts one)"
                    ),
                }
            }
        )
        return 3


def _run(args) -> int:
    from .context import Context

    if args.verb == "secret-key":
        from .secrets import new_key

        _print({"EXPORT_SECRET_KEY": new_key()})
        return 0
    # The local tools (exporter.local, never deployed) are imported only by the verbs that use them.
    if args.verb == "demo" and args.console:
        from .local.consoledemo import run_console_demo

        return run_console_demo(port=args.port, users=args.users)
    if args.verb == "demo":
        from .local.demo import run_demo

        return run_demo(hours=args.hours, users=args.users, now=args.now, destination=args.destination)
    clock = _clock(args)
    if args.verb == "serve":
        from . import egress
        from .local.serve import serve

        egress.warn_if_private_allowed(logging.getLogger("exporter"))
        return serve(args.host, args.port, args.timer_seconds, args.dev_sign_in)
    ctx = Context.create(clock=clock)
    if args.verb == "tick":
        from .local.host import tick
        from .local.progress import Progress

        _print(tick(ctx, progress=lambda total: Progress("exporting windows", total)))
        return 0
    if args.verb == "sweep":
        from .jobs import sweep

        _print(sweep(ctx).to_json())
        return 0
    operation = routes.OPERATIONS[args.operation]
    if operation.name == "integrations_audit":  # a long audit shows the bytes read so far
        from .audit import show_progress
        from .local.progress import Progress

        show_progress(lambda total: Progress("checking delivery (bytes read)", total))
    answer = api.handle(ctx, operation.name, _request(operation, args))
    if getattr(args, "format", "json") == "table" and answer.status < 400:
        sys.stdout.write(runs_table(answer.body[TABLES[operation.name]]))
    else:
        _print(answer.body)
    return api.exit_code(answer.status)
