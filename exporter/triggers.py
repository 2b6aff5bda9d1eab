"""What the Functions triggers call: function_app.py stays a thin table of bindings."""

from __future__ import annotations

import json
import logging
import threading
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass

import azure.functions as func

from . import access, api, jobs, logs
from .context import Context
from .errors import ExporterError
from .members import MemberRepo
from .routes import Route
from .scoped import scoped

log = logging.getLogger(__name__)
_context: Context | None = None
_lock = threading.Lock()


@dataclass(frozen=True)
class LocalRequest:
    """What `serve` (exporter/local/serve.py) sets around each request it hands a function; never set in Azure."""

    ctx: Context
    development_sign_in: bool = False  # the console's sign-in by user name, `serve --dev-sign-in` only


_local: ContextVar[LocalRequest | None] = ContextVar("exporter_local_request", default=None)


def context() -> Context:
    """One context per worker process, built on first use from the app settings; a local request's own under `serve`."""
    global _context
    local = _local.get()
    if local is not None:
        return local.ctx
    with _lock:
        if _context is None:
            logs.install_redaction()
            _context = Context.create()
        return _context


def use_context(ctx: Context | None) -> None:
    """Run the triggers on a given context (tests inject a clock and isolated storage)."""
    global _context
    with _lock:
        _context = ctx


def development_sign_in() -> bool:
    """Whether the console offers the development sign-in to this request: only under `serve --dev-sign-in`."""
    local = _local.get()
    return local is not None and local.development_sign_in


def local_request(scope: LocalRequest) -> AbstractContextManager[None]:
    """The functions called inside run on `scope`'s context (each `serve` host has its own)."""
    return scoped(_local, scope)


def http(route: Route, req: func.HttpRequest) -> func.HttpResponse:
    """Dispatch a request of one route template by its method."""
    method = req.method.upper()
    operation = route.operation(method)
    if operation is None:  # the host only passes the route's methods; this answers anyone else
        allowed = ", ".join(route.methods)
        return _json(
            405,
            {"error": {"code": "method_not_allowed", "message": f"{method} is not allowed here; use {allowed}"}},
            headers={"Allow": allowed},
        )
    request = api.ApiRequest(
        params=dict(req.route_params), body=req.get_body() or b"", query=dict(req.params), headers=dict(req.headers)
    )
    try:
        ctx = context()
    except ExporterError as error:  # a setting to fix (ConfigurationError), answered in JSON naming it
        log.error("cannot start: %s", error.message)
        return _json(api.http_status(error), error.to_json())
    except Exception as error:  # noqa: BLE001 - still an answer in JSON; the text stays in the (redacted) logs
        log.error("cannot start: %s", type(error).__name__)
        return _json(500, {"error": {"code": "internal_error", "message": "the app cannot start; see the logs"}})
    refused = _refused(ctx, operation.name, request)
    if refused is not None:
        return _json(*refused)
    answer = api.handle(ctx, operation.name, request)
    return _json(answer.status, answer.body)


def _refused(ctx: Context, operation: str, request: api.ApiRequest) -> tuple[int, dict] | None:
    """A request on behalf of a signed-in user is authorized against the account's members (exporter/access.py)."""
    enabled = access.app_service_auth_enabled()
    if not enabled:
        return None
    try:
        members = MemberRepo(ctx.storage, ctx.clock)
        return access.api_refusal(members, operation, request.params, request.headers, enabled)
    except Exception as error:  # noqa: BLE001 - the members table unreachable: refuse, never let the request through
        log.warning("members check failed (%s)", type(error).__name__)
        return 503, {
            "error": {"code": "unavailable", "message": "the service's storage is unavailable; retry the request"}
        }


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json", headers=headers)


def on_timer() -> jobs.ScheduleOutcome:
    return jobs.schedule(context())


def on_sweep() -> jobs.SweepOutcome:
    return jobs.sweep_unless_recent(context())


def on_export_job(message: func.QueueMessage) -> jobs.JobOutcome:
    """Raises on a transient failure so that the host redelivers (and finally poisons) the message."""
    return jobs.process_job(context(), message.get_body().decode(), message.dequeue_count or 1)


def on_poison(message: func.QueueMessage) -> jobs.PoisonOutcome:
    return jobs.record_poison(context(), message.get_body().decode())


def on_notification(message: func.QueueMessage) -> str:
    """A failed send is queued again with its delay (a new message), so the host deletes this one."""
    from .notifications import sender

    ctx = context()
    queue = ctx.storage.queue(ctx.settings.notify_queue_name)
    return sender.process_notification(
        ctx, message.get_body().decode(), lambda again, delay: queue.send_message(again, visibility_timeout=delay)
    )
