"""The console's delivery actions: "Check delivery" (the audit, exporter/audit.py, in sentences) and "New
signing secret" for the notifications (shown once, in this answer only: never stored in the clear)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..api import http_status
from ..audit import audit_delivery
from ..errors import ExporterError
from ..notifications.sender import attempt_log
from .messages import when_text
from .web import Response

if TYPE_CHECKING:  # the dispatcher imports this module
    from .app import Visit

SHOWN = 10  # problems named on the page (the API and CLI give them all)
WORDS = {
    "missing": "missing from the destination",
    "altered": "changed since delivery (size or SHA-256 differs)",
    "gap": "no file covers",
    "overlap": "two files cover",
    "extra": "a file no window recorded",
}


def check_delivery(visit: Visit) -> Response:
    try:
        answer = audit_delivery(visit.ctx, visit.account, visit.params["id"])
    except ExporterError as error:
        return _pages().integrations(visit, http_status(error), alert=f"Check delivery failed: {error.message}")
    if answer["ok"]:
        notice = f"Delivery checked: all {answer['windows']} delivered windows are in the destination, unchanged."
        return _pages().integrations(visit, notice=notice)
    problems = [_problem(p) for p in answer["problems"]]
    more = f" and {len(problems) - SHOWN} more (integrations audit lists them all)" if len(problems) > SHOWN else ""
    alert = (
        f"Delivery checked: {len(problems)} problems in {answer['windows']} delivered windows: "
        + "; ".join(problems[:SHOWN])
        + more
        + "."
    )
    return _pages().integrations(visit, alert=alert)


def _problem(problem: dict[str, Any]) -> str:
    window = problem.get("window")
    span = f"{when_text(window['start'])} to {when_text(window['end'])} UTC" if window else ""
    return " ".join(filter(None, [WORDS[problem["kind"]], span, problem.get("file")]))


def new_signing_secret(visit: Visit) -> Response:
    try:
        answer = visit.ctx.integrations.rotate_notify_secret(visit.account, visit.params["id"])
    except ExporterError as error:
        return _pages().integrations(visit, http_status(error), alert=f"No new signing secret: {error.message}")
    notice = (
        f"New signing secret for the notifications of {answer['name']}: {answer['notify']['secret']} "
        "Copy it now: it is not shown again. The previous secret no longer signs."
    )
    return _pages().integrations(visit, notice=notice)


def attempts(visit: Visit, item: dict[str, Any]) -> list[str]:
    """The integration's last notification attempts, newest first, in words (none without a url)."""
    if not item.get("notify"):
        return []
    return [a.words for a in attempt_log(visit.ctx).last(visit.account, item["id"])]


def _pages() -> ModuleType:
    from . import pages  # pages imports this module for `attempts`

    return pages
