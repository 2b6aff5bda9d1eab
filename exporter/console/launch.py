"""The wizard's Launch step, and launching once: a draft becomes at most one integration.

A new draft's integration gets an id derived from the draft, so whatever the browser does (Back, reload,
a double click, a second tab), a second create finds the first one instead of taking another slot: the
integrations table refuses a second entity with the same id, in the same transaction that takes the slot.
The draft also records what it became (`launched_id`) once it did, so a later visit of any step says so;
a process that dies between the create and that record is covered by the derived id.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..api import http_status
from ..clock import parse_instant
from ..errors import ExporterError, NotFoundError
from ..windows import FREQUENCIES_HOURS
from .authentication import changed_destination, complete_destination, verified_notice
from .drafts import Draft
from .fields import FILE_FORMATS, FORMAT_LABELS
from .messages import explain, when_text
from .steps import LIMIT_REACHED, Again, StepAnswer, drafts, form_value, limit_reached
from .web import Response, account_url, redirect

if TYPE_CHECKING:  # the dispatcher imports this module
    from .app import Visit


def values() -> dict[str, object]:
    return {
        "frequencies": FREQUENCIES_HOURS,
        "formats": [(name, FORMAT_LABELS.get(name, name)) for name in FILE_FORMATS],
    }


def launch_id(draft: Draft) -> str:
    """The id a new draft's integration gets: 12 hex digits, like every integration id, unique to the draft."""
    return hashlib.sha256(f"console-draft|{draft.account}|{draft.id}".encode()).hexdigest()[:12]


def became(visit: Visit, draft: Draft) -> Response | None:
    """The page for a draft that was launched (or, editing, saved) already; None while it was not."""
    if draft.launched_id:
        found = _find(visit, draft.account, draft.launched_id)
    elif not draft.editing and draft.steps_done >= 2:  # only a draft that reached Launch can have launched
        found = _find(visit, draft.account, launch_id(draft))
    else:
        return None
    if found is None and not draft.launched_id:
        return None
    done = "saved" if draft.editing else "launched"
    if found is None:
        return visit.page(
            200,
            "launched.html",
            heading=f"Already {done}",
            text=f"This wizard {done} an integration that has since been deleted. "
            "To export again, start a new integration.",
            link=account_url(draft.account),
            link_text="Integrations",
        )
    return visit.page(
        200,
        "launched.html",
        heading=f"Already {done}",
        text=f"This wizard {done} {found['name']} already; doing it again changes nothing.",
        link=integration_link(draft.account, found["id"]),
        link_text=f"Go to {found['name']}",
    )


def integration_link(account: str, integration_id: str) -> str:
    """An integration's place on the integrations page (its section's heading)."""
    return f"{account_url(account)}#h-{integration_id}"


def _find(visit: Visit, account: str, integration_id: str) -> dict[str, Any] | None:
    try:
        return visit.ctx.integrations.show(account, integration_id)
    except NotFoundError:
        return None


def submit(visit: Visit, draft: Draft) -> StepAnswer:
    form = visit.request.form()
    draft.name = form_value(form, "name").strip() or draft.name
    frequency = form_value(form, "frequency_hours")
    draft.frequency_hours = int(frequency) if frequency.isdigit() else draft.frequency_hours
    draft.status = "paused" if form_value(form, "status") == "paused" else "active"
    if FILE_FORMATS:
        draft.format = form_value(form, "format") or draft.format
    body: dict[str, object] = {
        "name": draft.name,
        "events": draft.events,
        "attributes": draft.attributes,
        "frequency_hours": draft.frequency_hours,
        "status": draft.status,
    }
    if FILE_FORMATS:
        body["format"] = draft.format
    draft.notify_url = form_value(form, "notify_url").strip()
    notify = notify_change(draft)
    if notify is not False:
        body["notify"] = notify
    if not draft.editing and limit_reached(visit):
        return _refused(visit, draft, 409, f"The integration could not be launched. {LIMIT_REACHED}")
    service = visit.ctx.integrations
    try:
        if draft.editing:
            if draft.status == draft.original.get("status"):
                del body["status"]
            if draft.destination_changed:
                body["destination"] = changed_destination(visit, draft)
            answer = service.update(draft.account, draft.integration_id, body, if_match=draft.etag or None)
        else:
            body["destination"] = complete_destination(visit, draft)
            answer = service.create(draft.account, body, integration_id=launch_id(draft))
    except ExporterError as error:
        heading = "The integration could not be saved" if draft.editing else "The integration could not be launched"
        return _refused(visit, draft, http_status(error), explain(error, heading, draft.type))
    draft.launched_id = answer["id"]
    draft.message = _launched_message(visit, draft, answer)
    drafts(visit).save(draft)
    return redirect(account_url(draft.account) + f"?done=launched&draft={quote(draft.id)}")


def notify_change(draft: Draft) -> dict[str, Any] | None | bool:
    """The body's `notify`: False when unchanged (an edit keeping its url and events), None to remove it.

    The secret of a new url is not kept from the answer (a draft is stored): the integrations page's
    "New signing secret" shows one, once.
    """
    if draft.notify_url == draft.original.get("notify_url", ""):
        return False
    return {"url": draft.notify_url} if draft.notify_url else None


def _refused(visit: Visit, draft: Draft, status: int, alert: str) -> StepAnswer:
    """A refusal, unless a second Launch at the same moment lost to the first: then the page says it launched."""
    first = became(visit, draft)
    if first is not None:
        return first
    drafts(visit).save(draft)
    return Again(status, alert=alert)


def _launched_message(visit: Visit, draft: Draft, answer: dict[str, Any]) -> str:
    """What the integrations page says once after Launch: what happened, and when the first file is due."""
    if draft.editing:
        message = f"{answer['name']} saved."
    elif answer["status"] == "paused":
        message = f"{answer['name']} saved as paused. No files are delivered until you resume it."
    else:
        start = parse_instant(answer["activated_at"], "stored")
        end = start + timedelta(hours=answer["frequency_hours"])
        due = end + timedelta(seconds=visit.ctx.settings.settle_seconds)
        message = (
            f"{answer['name']} launched. Its first file, for {when_text(start)} to {when_text(end)} UTC, "
            f"is due at about {when_text(due)} UTC."
        )
    if answer.get("verification"):
        message += " " + verified_notice(answer["verification"])
    return message
