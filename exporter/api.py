"""The management API as plain operations, shared by the Functions HTTP triggers, `serve` and the CLI.

Which routes and verbs reach them, and with which success status, is declared in `exporter.routes`.

This is the one place where errors become answers: ExporterError → its status and JSON body;
anything else → 500 with a generic message (exception text may carry secrets, so it is not echoed).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from . import access, routes
from .audit import audit_delivery
from .context import Context
from .errors import (
    ConfigurationError,
    ConflictError,
    CredentialError,
    DestinationError,
    ExporterError,
    InputError,
    InternalError,
    LimitError,
    NotFoundError,
    PreconditionFailed,
    TransientError,
)
from .history import MEMBER, OPERATOR, HistoryRepo, acting_as, history_json
from .integrations.replay import replay_window
from .logs import redact
from .members import MemberRepo
from .ucd.request import parse_upsert
from .ucd.values import Json
from .validation import check_account, check_fields, load_json_body

log = logging.getLogger(__name__)


# The one mapping of error classes to HTTP statuses (the CLI derives its exit codes from it).
HTTP_STATUS: dict[type[ExporterError], int] = {
    InputError: 400,
    NotFoundError: 404,
    ConflictError: 409,
    LimitError: 409,
    PreconditionFailed: 412,
    CredentialError: 422,
    DestinationError: 422,
    TransientError: 503,
    ConfigurationError: 500,
}


def http_status(error: ExporterError) -> int:
    """The HTTP status of an error class (the nearest mapped base class; 500 for anything else)."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def exit_code(status: int) -> int:
    """CLI exit code of an answer: 0 done, 1 refused, 3 server-side failure."""
    return 0 if status < 400 else (1 if status < 500 else 3)


@dataclass
class ApiRequest:
    params: dict[str, str] = field(default_factory=dict)  # route parameters
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Json:
        return load_json_body(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any]

    def text(self) -> str:
        return json.dumps(self.body, indent=2, sort_keys=False)


def _limit(request: ApiRequest) -> int:
    raw = request.query.get("limit", "1000")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise InputError("must be a whole number from 1 to 10000", field="limit")
    return int(raw)


def _upsert(ctx: Context, r: ApiRequest) -> dict:
    return ctx.ucd.upsert(parse_upsert(r.params["account"], r.json())).to_json()


def _account_history(ctx: Context, r: ApiRequest) -> dict:
    """Every change of the account, members and integrations (deleted ones too), newest first."""
    account = check_account(r.params["account"])
    members = MemberRepo(ctx.storage, ctx.clock)
    integrations = ctx.integrations.versions(account)

    def current(subject: str, subject_id: str) -> str:
        return members.version(account, subject_id) if subject == MEMBER else integrations(subject, subject_id)

    return history_json(HistoryRepo(ctx.storage, ctx.clock).list(account, current, _limit(r)))


def _who(request: ApiRequest) -> str:
    """Who the history names: the signed-in user (believed only where App Service Authentication is on), or the operator."""
    user = access.principal_user(request.headers) if access.app_service_auth_enabled() else None
    return user or OPERATOR


OPERATIONS: dict[str, Callable[[Context, ApiRequest], Mapping[str, object]]] = {
    "ucd_upsert": _upsert,
    "ucd_delete_user": lambda ctx, r: ctx.ucd.delete_user(r.params["account"], r.params["user_id"]),
    "ucd_catalog": lambda ctx, r: ctx.ucd.catalog(r.params["account"]),
    "integrations_verify": lambda ctx, r: ctx.integrations.verify(r.params["account"], r.json()),
    "integrations_create": lambda ctx, r: ctx.integrations.create(r.params["account"], r.json()),
    "integrations_list": lambda ctx, r: ctx.integrations.list(r.params["account"]),
    "integrations_show": lambda ctx, r: ctx.integrations.show(r.params["account"], r.params["id"]),
    "integrations_update": lambda ctx, r: ctx.integrations.update(
        r.params["account"], r.params["id"], r.json(), if_match=r.header("If-Match")
    ),
    "integrations_pause": lambda ctx, r: ctx.integrations.pause(r.params["account"], r.params["id"]),
    "integrations_resume": lambda ctx, r: ctx.integrations.resume(r.params["account"], r.params["id"]),
    "integrations_delete": lambda ctx, r: ctx.integrations.delete(r.params["account"], r.params["id"]),
    "integrations_runs": lambda ctx, r: ctx.integrations.runs(r.params["account"], r.params["id"], _limit(r)),
    "integrations_history": lambda ctx, r: ctx.integrations.history(r.params["account"], r.params["id"], _limit(r)),
    "integrations_audit": lambda ctx, r: audit_delivery(
        ctx, r.params["account"], r.params["id"], r.query.get("from"), r.query.get("to")
    ),
    "integrations_rotate_notify_secret": lambda ctx, r: ctx.integrations.rotate_notify_secret(
        r.params["account"], r.params["id"]
    ),
    "integrations_replay": lambda ctx, r: replay_window(
        ctx, r.params["account"], r.params["id"], check_fields(r.json(), {"start"}, "body").get("start")
    ),
    "members_list": lambda ctx, r: MemberRepo(ctx.storage, ctx.clock).list(r.params["account"]),
    "members_add": lambda ctx, r: MemberRepo(ctx.storage, ctx.clock).add(r.params["account"], r.params["user"]),
    "members_remove": lambda ctx, r: MemberRepo(ctx.storage, ctx.clock).remove(r.params["account"], r.params["user"]),
    "members_history": _account_history,
    "integrations_identity": lambda ctx, r: ctx.identity(r.params["account"]),
}

if set(OPERATIONS) != set(routes.OPERATIONS):  # a route without code, or code without a route
    raise RuntimeError(f"exporter.api and exporter.routes disagree: {sorted(set(OPERATIONS) ^ set(routes.OPERATIONS))}")


def _refused_as_malformed(error: AzureError) -> bool:
    """A 4xx from our own storage other than timeouts, throttling and races: it will refuse a retry too."""
    status = getattr(error, "status_code", None)
    return (
        isinstance(error, HttpResponseError)
        and status is not None
        and 400 <= status < 500
        and status not in (408, 409, 412, 429)
    )


def handle(ctx: Context, operation: str, request: ApiRequest) -> ApiResponse:
    """Run one operation and turn its outcome, or its error, into a status and a JSON body."""
    try:
        with acting_as(_who(request)):
            body = OPERATIONS[operation](ctx, request)
        return ApiResponse(routes.OPERATIONS[operation].status, dict(body))
    except ExporterError as error:
        body = error.to_json()
        if operation == "integrations_verify":
            body = {"ok": False, "test_file": None, **body}
        return ApiResponse(http_status(error), body)
    except AzureError as error:
        if _refused_as_malformed(error):
            # Our storage refused what we sent as invalid: retrying cannot help, so it is a bug of ours.
            log.error(
                "storage refused a request in %s (%s %s): %s",
                operation,
                type(error).__name__,
                getattr(error, "status_code", ""),
                redact(traceback.format_exc()),
            )
            return ApiResponse(500, InternalError("the service's storage refused the request; see the logs").to_json())
        # Our own storage failing (timeouts, 5xx, throttling after the SDK's retries): the caller retries.
        log.warning("storage failure in %s (%s)", operation, type(error).__name__)
        return ApiResponse(503, TransientError("the service's storage is unavailable; retry the request").to_json())
    except Exception as error:  # noqa: BLE001 - the last line of defence; never echo the text
        # The traceback goes to the logs through the redacting filter, never into the answer.
        log.error("unexpected failure in %s (%s): %s", operation, type(error).__name__, redact(traceback.format_exc()))
        return ApiResponse(500, {"error": {"code": "internal_error", "message": "unexpected failure; see the logs"}})
