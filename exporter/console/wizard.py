"""The product page's three steps: Authentication, Configure, Launch.

Each step is a page and a form; what was saved so far is a draft (exporter/console/drafts.py), so
the secret a user pasted is sealed server-side and never sent back. This module starts a wizard,
dispatches to the steps (authentication.py, the Configure step below, launch.py) and renders their
pages. A draft that was launched answers every step with "already launched" (launch.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..destinations import DESTINATION_KINDS, destination_types
from ..errors import ExporterError, InputError
from ..export.plan import column_plan
from ..integrations.bodies import parse_body
from . import authentication, launch
from .drafts import STEPS, Draft
from .fields import DEFAULT_FILE_FORMAT, type_name
from .messages import explain
from .steps import LIMIT_REACHED, Again, StepAnswer, drafts, form_value, limit_reached, step_url
from .web import Response, account_url, redirect

if TYPE_CHECKING:  # the dispatcher imports this module
    from .app import Visit

STEP_TITLES = {"authentication": "Authentication", "configure": "Configure", "launch": "Launch"}


# ------------------------------------------------------------------ starting


def choose_type(visit: Visit, status: int = 200) -> Response:
    """The destination types; at the limit, only that the limit is reached (before anything is verified)."""
    if limit_reached(visit):
        return visit.page(status, "choose_type.html", types=[], alert=LIMIT_REACHED)
    types = [(kind, type_name(kind)) for kind in destination_types()]
    return visit.page(status, "choose_type.html", types=types, action=account_url(visit.account, "new"))


def start(visit: Visit) -> Response:
    kind = form_value(visit.request.form(), "type")
    if kind not in DESTINATION_KINDS:
        return choose_type(visit)
    if limit_reached(visit):
        return choose_type(visit, 409)
    auth = authentication.default_method(visit, DESTINATION_KINDS[kind])
    draft = drafts(visit).new(visit.account, visit.user, kind, auth=auth, name=f"{type_name(kind)} export")
    return redirect(step_url(draft, "authentication"))


def start_edit(visit: Visit) -> Response:
    """Editing opens the same wizard, filled in from the integration (never its secret), on the way it authenticates."""
    try:
        item = visit.ctx.integrations.show(visit.account, visit.params["id"])
    except ExporterError:
        return visit.page(404, "error.html", message="No such integration.")
    destination = item["destination"]
    kind = DESTINATION_KINDS[destination["type"]]
    public = {
        name: str(destination.get(name) or "")
        for name in kind.credential_checks
        if name not in kind.form.secret and destination.get(name)
    }
    masked = {name: str(destination[name]) for name in kind.form.secret if destination.get(name)}
    auth = authentication.stored_method(kind, authentication.stored_credentials(visit, visit.account, item["id"]))
    original = {
        "container": destination.get(kind.container_field) or "",
        "prefix": destination.get("prefix") or "",
        "public": public,
        "auth": auth,
    }
    draft = drafts(visit).new(
        visit.account,
        visit.user,
        kind.name,
        integration_id=item["id"],
        etag=item["etag"] or "",
        container=original["container"],
        prefix=original["prefix"],
        auth=auth,
        public=public,
        masked=masked,
        destination_changed=False,
        verified=False,
        steps_done=3,
        events=item["events"],
        attributes=item["attributes"],
        name=item["name"],
        frequency_hours=item["frequency_hours"],
        status="paused" if item["status"] == "paused" else "active",
        format=item.get("format") or DEFAULT_FILE_FORMAT,
        notify_url=(item.get("notify") or {}).get("url", ""),
        original={**original, "status": item["status"], "notify_url": (item.get("notify") or {}).get("url", "")},
    )
    return redirect(step_url(draft, "authentication"))


# ------------------------------------------------------------------ dispatch


def show(visit: Visit) -> Response:
    return _step(visit, lambda draft, step: Again())


def submit(visit: Visit) -> Response:
    handlers: dict[str, Callable[[Visit, Draft], StepAnswer]] = {
        "authentication": authentication.submit,
        "configure": _configure,
        "launch": launch.submit,
    }
    return _step(visit, lambda draft, step: handlers[step](visit, draft))


def _step(visit: Visit, answer: Callable[[Draft, str], StepAnswer]) -> Response:
    """The user's draft and a step they have reached: a later step sends them to the first one not saved yet,
    and every step of a draft that was launched already says so (Back, reload, a second Launch)."""
    step = visit.params["step"]
    draft = drafts(visit).get(visit.account, visit.params["draft"], visit.user) if step in STEPS else None
    if draft is None:
        return visit.page(404, "error.html", message="This wizard has expired. Start again from the integrations page.")
    done = launch.became(visit, draft)
    if done is not None:
        return done
    if STEPS.index(step) > draft.steps_done:
        return redirect(step_url(draft, STEPS[draft.steps_done]))
    answered = answer(draft, step)
    if isinstance(answered, Again):
        return _render(visit, draft, step, answered)
    return answered


def _render(visit: Visit, draft: Draft, step: str, again: Again) -> Response:
    """One step's page; `again.alert` is the detailed error shown at the top (role="alert")."""
    values: dict[str, Any] = {}
    if step == "authentication":
        values = authentication.values(visit, draft)
    elif step == "configure":
        values = _configure_values(visit, draft)
    else:
        values = launch.values()
    steps = [
        {
            "name": s,
            "title": STEP_TITLES[s],
            "url": step_url(draft, s),
            "reachable": i <= draft.steps_done,
            "current": s == step,
        }
        for i, s in enumerate(STEPS)
    ]
    return visit.page(
        again.status,
        f"wizard_{step}.html",
        draft=draft,
        type_name=type_name(draft.type),
        step=step,
        step_title=STEP_TITLES[step],
        steps=steps,
        action=step_url(draft, step),
        back=step_url(draft, STEPS[STEPS.index(step) - 1]) if step != STEPS[0] else account_url(draft.account),
        cancel=account_url(draft.account),
        alert=again.alert,
        notice=again.notice,
        **values,
    )


# ------------------------------------------------------------------ Configure


def _configure_values(visit: Visit, draft: Draft) -> dict[str, Any]:
    """The account's catalog with the draft's selection checked (selected names the catalog lacks are kept)."""
    catalog = visit.ctx.ucd.catalog(draft.account)
    selected = {e["name"]: list(e.get("params") or []) for e in draft.events}
    names = list(catalog["events"]) + [n for n in selected if n not in catalog["events"]]
    events = []
    for i, name in enumerate(names):
        keys = list(catalog["events"].get(name, []))
        keys += [k for k in selected.get(name, []) if k not in keys]
        events.append(
            {
                "index": i,
                "name": name,
                "checked": name in selected,
                "params": [
                    {"key": k, "value": json.dumps([name, k]), "checked": k in selected.get(name, [])} for k in keys
                ],
            }
        )
    attributes = list(catalog["attributes"]) + [a for a in draft.attributes if a not in catalog["attributes"]]
    return {
        "events": events,
        "attributes": [{"key": a, "checked": a in draft.attributes} for a in attributes],
    }


def _configure(visit: Visit, draft: Draft) -> StepAnswer:
    form = visit.request.form()
    chosen = form.get("event", [])
    params: dict[str, list[str]] = {name: [] for name in chosen}
    for raw in form.get("param", []):
        try:
            name, key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if name in params and isinstance(key, str):
            params[name].append(key)
    draft.events = [{"name": name, "params": params[name]} for name in chosen]
    draft.attributes = form.get("attribute", [])
    try:
        if not chosen:
            raise InputError("select at least one event", field="events")
        changes = parse_body({"events": draft.events, "attributes": draft.attributes}, partial=True)
        column_plan(changes.events or (), changes.attributes or ())
    except InputError as error:
        drafts(visit).save(draft)
        words = "These selections cannot be exported together" if "collide" in error.message else "Check the selection"
        return Again(400, alert=explain(error, words))
    draft.steps_done = max(draft.steps_done, 2)
    drafts(visit).save(draft)
    return redirect(step_url(draft, "launch"))
