"""The management operations, declared once.

function_app.py registers one HTTP function per route below (`serve` hands requests to those
functions), and the CLI builds one verb per operation; `exporter.api` holds what each operation does.
The routes, methods and statuses are the HTTP contract (docs/architecture.md, "HTTP API and CLI").

A route template's `{account}` becomes the CLI's `--account`; its other parameters are positional
arguments, in template order, followed by FILE when the operation takes a JSON body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Option:
    """A CLI option that becomes part of the HTTP request: a header, a query parameter or a body field."""

    flag: str  # "--if-match"
    goes_to: str  # "header", "query" or "body"
    key: str  # the header, query parameter or body field it fills
    help: str
    type: type = str
    default: object = None
    required: bool = False

    @property
    def dest(self) -> str:
        """The attribute argparse stores it under."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Operation:
    """One method of a route and one CLI verb, calling the same code (exporter.api.OPERATIONS)."""

    name: str
    method: str
    verb: str  # the CLI words, "integrations update"
    help: str
    example: str  # shown by the verb's --help
    body: bool = False  # the request body is a JSON document: FILE or - (standard input) on the CLI
    status: int = 200  # the status of a success
    options: tuple[Option, ...] = ()
    template: str = ""  # filled in by `route`

    @property
    def params(self) -> list[str]:
        """The route parameters, in template order."""
        return re.findall(r"\{(\w+)\}", self.template)


@dataclass(frozen=True)
class Route:
    """One Functions HTTP function: a route template under /api and the operations (methods) it serves.

    `function` is the function's name in the host: keep it stable, function keys and logs use it.
    """

    function: str
    template: str
    operations: tuple[Operation, ...]

    @property
    def methods(self) -> list[str]:
        return [op.method for op in self.operations]

    def operation(self, method: str) -> Operation | None:
        return next((op for op in self.operations if op.method == method), None)


def route(function: str, template: str, *operations: Operation) -> Route:
    return Route(function, template, tuple(replace(op, template=template) for op in operations))


IF_MATCH = Option("--if-match", "header", "If-Match", "refuse the change if the integration's ETag is no longer this")
LIMIT = Option(
    "--limit",
    "query",
    "limit",
    "at most this many records, newest first (1 to 10000; default: 100)",
    type=int,
    default=100,
)
FROM = Option("--from", "query", "from", "only windows ending after this instant (RFC 3339)")
TO = Option("--to", "query", "to", "only windows starting before this instant (RFC 3339)")
START = Option("--start", "body", "start", "the window's start, Unix seconds (see `runs`)", type=int, required=True)
EXAMPLE_ID = "3f9c0a1b2c3d"
# host.json's routePrefix is empty (the console is at /console), so the API's functions name /api themselves.
API_PREFIX = "api/"
CLI = "python -m exporter"

ROUTES: tuple[Route, ...] = (
    route(
        "ucd_upsert",
        "ucd/{account}/upsert",
        Operation(
            "ucd_upsert",
            "POST",
            "ucd upsert",
            "store users and events; answers received/stored/duplicate counts",
            f"{CLI} ucd upsert --account acme events.json",
            body=True,
        ),
    ),
    route(
        "ucd_user",
        "ucd/{account}/users/{user_id}",
        Operation(
            "ucd_delete_user",
            "DELETE",
            "ucd delete-user",
            "tombstone a user profile (stored events stay)",
            f"{CLI} ucd delete-user --account acme user-42",
        ),
    ),
    route(
        "ucd_catalog",
        "ucd/{account}/catalog",
        Operation(
            "ucd_catalog",
            "GET",
            "ucd catalog",
            "event names with parameter keys, and attribute keys",
            f"{CLI} ucd catalog --account acme",
        ),
    ),
    route(
        "integrations_verify",
        "accounts/{account}/integrations/verify",
        Operation(
            "integrations_verify",
            "POST",
            "integrations verify",
            "verify a destination: write a test file and try to delete it",
            f"{CLI} integrations verify --account acme destination.json",
            body=True,
        ),
    ),
    route(
        "integrations",
        "accounts/{account}/integrations",
        Operation(
            "integrations_list",
            "GET",
            "integrations list",
            "list an account's integrations",
            f"{CLI} integrations list --account acme",
        ),
        Operation(
            "integrations_create",
            "POST",
            "integrations create",
            "create an integration (the destination is verified first)",
            f"{CLI} integrations create --account acme integration.json",
            body=True,
            status=201,
        ),
    ),
    route(
        "integration",
        "accounts/{account}/integrations/{id}",
        Operation(
            "integrations_show",
            "GET",
            "integrations show",
            "show one integration",
            f"{CLI} integrations show --account acme {EXAMPLE_ID}",
        ),
        Operation(
            "integrations_update",
            "PATCH",
            "integrations update",
            "change an integration (credentials are verified first)",
            f"echo '{{\"frequency_hours\": 6}}' | {CLI} integrations update --account acme {EXAMPLE_ID} -",
            body=True,
            options=(IF_MATCH,),
        ),
        Operation(
            "integrations_delete",
            "DELETE",
            "integrations delete",
            "delete an integration and free its slot",
            f"{CLI} integrations delete --account acme {EXAMPLE_ID}",
        ),
    ),
    route(
        "integration_pause",
        "accounts/{account}/integrations/{id}/pause",
        Operation(
            "integrations_pause",
            "POST",
            "integrations pause",
            "pause delivery",
            f"{CLI} integrations pause --account acme {EXAMPLE_ID}",
        ),
    ),
    route(
        "integration_resume",
        "accounts/{account}/integrations/{id}/resume",
        Operation(
            "integrations_resume",
            "POST",
            "integrations resume",
            "resume delivery; catches up from the last delivered window",
            f"{CLI} integrations resume --account acme {EXAMPLE_ID}",
        ),
    ),
    route(
        "integration_runs",
        "accounts/{account}/integrations/{id}/runs",
        Operation(
            "integrations_runs",
            "GET",
            "integrations runs",
            "run history: one record per exported window, newest first",
            f"{CLI} integrations runs --account acme {EXAMPLE_ID} --format table",
            options=(LIMIT,),
        ),
    ),
    route(
        "integration_history",
        "accounts/{account}/integrations/{id}/history",
        Operation(
            "integrations_history",
            "GET",
            "integrations history",
            "who changed the integration, what and when, newest first (secrets only as changed)",
            f"{CLI} integrations history --account acme {EXAMPLE_ID}",
            options=(LIMIT,),
        ),
    ),
    route(
        "integration_audit",
        "accounts/{account}/integrations/{id}/audit",
        Operation(
            "integrations_audit",
            "GET",
            "integrations audit",
            "check the destination against the run records (read only): every window's file, its size and "
            "SHA-256, no gap, no overlap, no stray file",
            f"{CLI} integrations audit --account acme {EXAMPLE_ID} --from 2026-11-01T00:00:00Z",
            options=(FROM, TO),
        ),
    ),
    route(
        "integration_notify_secret",
        "accounts/{account}/integrations/{id}/rotate-notify-secret",
        Operation(
            "integrations_rotate_notify_secret",
            "POST",
            "integrations rotate-notify-secret",
            "a new signing secret for the integration's notifications, shown once in the answer",
            f"{CLI} integrations rotate-notify-secret --account acme {EXAMPLE_ID}",
        ),
    ),
    route(
        "integration_replay",
        "accounts/{account}/integrations/{id}/replay",
        Operation(
            "integrations_replay",
            "POST",
            "integrations replay",
            "re-export one delivered window under the same name with the same bytes",
            f"{CLI} integrations replay --account acme {EXAMPLE_ID} --start 1795860000",
            options=(START,),
        ),
    ),
    route(
        "account_identity",
        "accounts/{account}/identity",
        Operation(
            "integrations_identity",
            "GET",
            "integrations identity",
            "the platform's identity to grant instead of a key: the AWS principal and this account's "
            "external id, the Google service account, the Entra application",
            f"{CLI} integrations identity --account acme",
        ),
    ),
    route(
        "members",
        "accounts/{account}/members",
        Operation(
            "members_list",
            "GET",
            "members list",
            "the users who may manage the account in the console",
            f"{CLI} members list --account acme",
        ),
    ),
    route(
        "account_history",
        "accounts/{account}/history",
        Operation(
            "members_history",
            "GET",
            "members history",
            "the account's history, newest first: members added and removed, and every integration's "
            "changes (deleted integrations too)",
            f"{CLI} members history --account acme",
            options=(LIMIT,),
        ),
    ),
    route(
        "member",
        "accounts/{account}/members/{user}",
        Operation(
            "members_add",
            "PUT",
            "members add",
            "let a user manage the account in the console (the name they sign in with)",
            f"{CLI} members add --account acme alice@contoso.com",
        ),
        Operation(
            "members_remove",
            "DELETE",
            "members remove",
            "stop a user managing the account",
            f"{CLI} members remove --account acme alice@contoso.com",
        ),
    ),
)

OPERATIONS: dict[str, Operation] = {op.name: op for r in ROUTES for op in r.operations}
