"""The account's pages: which accounts, the integrations page with run histories, and its actions
(pause, resume, delete with confirmation, replay of a delivered window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..api import http_status
from ..clock import parse_instant
from ..errors import ExporterError, NotFoundError
from ..integrations.replay import replay_window
from ..integrations.repo import MAX_DESTINATIONS_PER_ACCOUNT
from ..runs import RunStatus
from . import delivery, history
from .fields import FORMAT_LABELS, type_name
from .messages import NO_SUCH_INTEGRATION, container_field_of, field_labels, sentence, when_text
from .steps import drafts
from .web import Response, account_url, redirect

if TYPE_CHECKING:  # the dispatcher imports this module
    from .app import Visit

HISTORY = 24  # run records shown (and charted) per integration
CHART_WIDTH, CHART_HEIGHT = 480, 64
DONE = {
    "paused": "Paused {name}. No files are delivered until you resume it.",
    "resumed": "Resumed {name}. It catches up from its last delivered window.",
    "deleted": "Deleted {name}. Its destination slot is free.",
}
STATUS_WORDS = {
    "active": "Active",
    "paused": "Paused",
    "credential_error": "Stopped: credential error",
    "destination_error": "Stopped: destination error",
}


def home(visit: Visit) -> Response:
    """The accounts the user may manage; straight to the account when there is only one."""
    accounts = visit.console.members.accounts_of(visit.user)
    if len(accounts) == 1:
        return redirect(account_url(accounts[0]))
    return visit.page(200, "accounts.html", accounts=[(a, account_url(a)) for a in accounts])


def integrations(visit: Visit, status: int = 200, alert: str = "", notice: str = "") -> Response:
    """Every integration of the account with its state and run history."""
    account = visit.account
    listed = visit.ctx.integrations.list(account)["integrations"]
    now = visit.ctx.clock.now()
    views = [_view(visit, item, now) for item in listed]
    notice = notice or _done_notice(visit, listed)
    return visit.page(
        status,
        "integrations.html",
        integrations=views,
        used=len(listed),
        limit=MAX_DESTINATIONS_PER_ACCOUNT,
        new_url=account_url(account, "new"),
        alert=alert,
        notice=notice,
    )


def _done_notice(visit: Visit, listed: list[dict[str, Any]]) -> str:
    """The confirmation of the action that redirected here (?done=...), in fixed words."""
    done, name = visit.request.arg("done"), visit.request.arg("name")
    if done in DONE:
        return DONE[done].format(name=name or "the integration")
    if done == "launched":
        repo = drafts(visit)
        draft = repo.get(visit.account, visit.request.arg("draft"), visit.user)
        if draft is not None and draft.message:
            message, draft.message = draft.message, ""  # said once: a reload of the page does not repeat it
            repo.save(draft)
            return message
    return ""


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float


def _bars(values: list[int]) -> list[Bar]:
    """Bar geometry for one chart row, oldest window on the left, scaled to the largest value."""
    if not values:
        return []
    top = max(values) or 1
    step = CHART_WIDTH / HISTORY  # one slot per window shown: a bar keeps its width as the history grows
    bars = []
    for i, value in enumerate(values):
        height = round((CHART_HEIGHT - 4) * value / top, 1) if value else 0
        bars.append(Bar(round(i * step + 1, 1), round(CHART_HEIGHT - height, 1), round(max(step - 2, 1), 1), height))
    return bars


def _duration(seconds: float) -> str:
    minutes = max(int(seconds // 60), 0)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _view(visit: Visit, item: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the page shows of one integration."""
    runs = visit.ctx.integrations.runs(visit.account, item["id"], HISTORY)["runs"]
    delivered = next((r for r in runs if r["status"] == RunStatus.EXPORTED), None)
    since = item["last_success_end"] or item["activated_at"]
    lag = _duration((now - parse_instant(since, "stored")).total_seconds()) if since else "not started"
    chronological = list(reversed(runs))
    destination = item["destination"]
    labels = field_labels(destination["type"])
    container_field = container_field_of(destination["type"])
    return {
        "id": item["id"],
        "name": item["name"],
        "type": type_name(destination["type"]),
        "status": item["status"],
        "status_words": STATUS_WORDS.get(item["status"], item["status"]),
        "reason": item["last_error"] or "",
        "frequency": item["frequency_hours"],
        "format": FORMAT_LABELS.get(item.get("format", ""), item.get("format", "")),
        "container_label": labels[container_field],
        "container": destination.get(container_field) or "",
        "prefix_label": labels["prefix"],
        "prefix": destination.get("prefix") or "",
        "next_file": _next_file(visit, item, now),
        "last_window": f"{when_text(delivered['window_start'])} to {when_text(delivered['window_end'])} UTC"
        if delivered
        else "none yet",
        "lag": lag,
        "runs": [
            {
                **r,
                "start_text": when_text(r["window_start"]),
                "end_text": when_text(r["window_end"]),
                "delivered": r["status"] == RunStatus.EXPORTED,
            }
            for r in runs
        ],
        "rows_bars": _bars([r["rows"] for r in chronological]),
        "bytes_bars": _bars([r["bytes"] for r in chronological]),
        "max_rows": max((r["rows"] for r in runs), default=0),
        "max_bytes": max((r["bytes"] for r in runs), default=0),
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
        "history": history.entries(visit, item["id"]),
        "url": lambda *parts: account_url(visit.account, "integrations", item["id"], *parts),
        "notify_url": (item.get("notify") or {}).get("url", ""),  # delivery (issue 25): console/delivery.py
        "notify_attempts": delivery.attempts(visit, item),
    }


def _next_file(visit: Visit, item: dict[str, Any], now: datetime) -> str:
    """When the next file is due: its window's end plus the settle time (the timer runs every minute)."""
    if item["status"] != "active":
        return "none while " + ("paused" if item["status"] == "paused" else "stopped")
    since = item["last_success_end"] or item["activated_at"]
    if not since:
        return "not started"
    start = parse_instant(since, "stored")
    end = start + timedelta(hours=item["frequency_hours"])
    due = end + timedelta(seconds=visit.ctx.settings.settle_seconds)
    window = f"for {when_text(start)} to {when_text(end)} UTC"
    return f"now, {window} (catching up)" if due <= now else f"at about {when_text(due)} UTC, {window}"


def _refused(visit: Visit, error: ExporterError) -> Response:
    """The integrations page with why an action was refused: one that is not there (or not this account's) is a 404."""
    alert = NO_SUCH_INTEGRATION if isinstance(error, NotFoundError) else sentence(error.message)
    return integrations(visit, http_status(error), alert=alert)


def pause_resume(visit: Visit) -> Response:
    service, account, integration_id = visit.ctx.integrations, visit.account, visit.params["id"]
    try:
        answer = (service.pause if visit.params["action"] == "pause" else service.resume)(account, integration_id)
    except ExporterError as error:
        return _refused(visit, error)
    done = "paused" if visit.params["action"] == "pause" else "resumed"
    return redirect(account_url(account) + f"?done={done}&name={_q(answer['name'])}")


def confirm_delete(visit: Visit) -> Response:
    try:
        item = visit.ctx.integrations.show(visit.account, visit.params["id"])
    except NotFoundError:
        return visit.page(404, "error.html", message=NO_SUCH_INTEGRATION)
    return visit.page(
        200,
        "delete.html",
        integration=item,
        back=account_url(visit.account),
        action=account_url(visit.account, "integrations", item["id"], "delete"),
    )


def delete(visit: Visit) -> Response:
    service = visit.ctx.integrations
    try:
        name = service.show(visit.account, visit.params["id"])["name"]
        service.delete(visit.account, visit.params["id"])
    except ExporterError as error:
        return _refused(visit, error)
    return redirect(account_url(visit.account) + f"?done=deleted&name={_q(name)}")


def replay(visit: Visit) -> Response:
    start = (visit.request.form().get("start") or [""])[0]
    try:
        answer = replay_window(visit.ctx, visit.account, visit.params["id"], int(start) if start.isdigit() else start)
    except ExporterError as error:
        return integrations(visit, http_status(error), alert=f"Replay refused: {error.message}")
    notice = (
        f"Replayed the window {when_text(answer['window_start'])} to {when_text(answer['window_end'])} UTC: "
        f"{answer['file']} rewritten with {answer['rows']} rows, the same name and the same bytes."
    )
    return integrations(visit, notice=notice)


def _q(text: str) -> str:
    return quote(text, safe="")
