"""The product page's three steps: Authentication, Configure, Launch.

Each step is a page and a form; what was saved so far is a draft (exporter/console/drafts.py), so
the secret a user pasted is sealed server-side and never sent back. Launch creates the integration
(or, when editing, updates it) through the integration service, which verifies the destination
again, exactly as the API does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..api import http_status
from ..destinations import DESTINATION_KINDS, DESTINATION_TYPES
from ..errors import ExporterError, InputError
from ..integrations.model import check_columns, parse_body
from ..windows import FREQUENCIES_HOURS
from .drafts import STEPS, Draft, DraftRepo
from .fields import DEFAULT_FILE_FORMAT, FILE_FORMATS, FORMAT_LABELS, LABELS, TYPE_NAMES, Field, fields_of
from .web import Response, account_url, redirect

if TYPE_CHECKING:  # the dispatcher imports this module
    from .app import Visit

STEP_TITLES = {"authentication": "Authentication", "configure": "Configure", "launch": "Launch"}


def _drafts(visit: Visit) -> DraftRepo:
    return DraftRepo(visit.ctx.storage, visit.ctx.clock)


def _url(draft: Draft, step: str) -> str:
    return account_url(draft.account, "wizard", draft.id, step)


def _form(visit: Visit) -> dict[str, list[str]]:
    return visit.request.form()


def _one(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


# ------------------------------------------------------------------ starting


def choose_type(visit: Visit) -> Response:
    types = [(kind, TYPE_NAMES[kind]) for kind in DESTINATION_TYPES]
    return visit.page(200, "choose_type.html", types=types, action=account_url(visit.account, "new"))


def start(visit: Visit) -> Response:
    kind = _one(_form(visit), "type")
    if kind not in DESTINATION_KINDS:
        return choose_type(visit)
    draft = _drafts(visit).new(visit.account, visit.user, kind, name=f"{TYPE_NAMES[kind]} export")
    return redirect(_url(draft, "authentication"))


def start_edit(visit: Visit) -> Response:
    """Editing opens the same wizard, filled in from the integration (never its secret)."""
    try:
        item = visit.ctx.integrations.show(visit.account, visit.params["id"])
    except ExporterError:
        return visit.page(404, "error.html", message="No such integration.")
    destination = item["destination"]
    kind = DESTINATION_KINDS[destination["type"]]
    public = {
        name: str(destination.get(name) or "")
        for name in kind.credential_checks
        if name not in _secret_names(kind.name) and destination.get(name)
    }
    masked = {name: str(destination[name]) for name in _secret_names(kind.name) if destination.get(name)}
    original = {
        "container": destination.get(kind.container_field) or "",
        "prefix": destination.get("prefix") or "",
        "public": public,
    }
    draft = _drafts(visit).new(
        visit.account,
        visit.user,
        kind.name,
        integration_id=item["id"],
        etag=item["etag"] or "",
        container=original["container"],
        prefix=original["prefix"],
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
        original={**original, "status": item["status"]},
    )
    return redirect(_url(draft, "authentication"))


def _secret_names(kind: str) -> set[str]:
    return {f.name for f in fields_of(DESTINATION_KINDS[kind]) if f.secret}


# ------------------------------------------------------------------ dispatch


def show(visit: Visit) -> Response:
    return _step(visit, lambda draft, step: _render(visit, draft, step))


def submit(visit: Visit) -> Response:
    handlers = {"authentication": _authenticate, "configure": _configure, "launch": _launch}
    return _step(visit, lambda draft, step: handlers[step](visit, draft))


def _step(visit: Visit, answer: Callable[[Draft, str], Response]) -> Response:
    """The user's draft and a step they have reached: a later step sends them to the first one not saved yet."""
    step = visit.params["step"]
    draft = _drafts(visit).get(visit.account, visit.params["draft"], visit.user) if step in STEPS else None
    if draft is None:
        return visit.page(404, "error.html", message="This wizard has expired. Start again from the integrations page.")
    if STEPS.index(step) > draft.steps_done:
        return redirect(_url(draft, STEPS[draft.steps_done]))
    return answer(draft, step)


def _render(visit: Visit, draft: Draft, step: str, status: int = 200, alert: str = "", notice: str = "") -> Response:
    """One step's page; `alert` is the detailed error shown at the top (role="alert")."""
    values: dict[str, Any] = {}
    if step == "authentication":
        values = _authentication_values(draft)
    elif step == "configure":
        values = _configure_values(visit, draft)
    else:
        values = {
            "frequencies": FREQUENCIES_HOURS,
            "formats": [(name, FORMAT_LABELS.get(name, name)) for name in FILE_FORMATS],
        }
    steps = [
        {
            "name": s,
            "title": STEP_TITLES[s],
            "url": _url(draft, s),
            "reachable": i <= draft.steps_done,
            "current": s == step,
        }
        for i, s in enumerate(STEPS)
    ]
    return visit.page(
        status,
        f"wizard_{step}.html",
        draft=draft,
        type_name=TYPE_NAMES[draft.type],
        step=step,
        step_title=STEP_TITLES[step],
        steps=steps,
        action=_url(draft, step),
        back=_url(draft, STEPS[STEPS.index(step) - 1]) if step != STEPS[0] else account_url(draft.account),
        cancel=account_url(draft.account),
        alert=alert,
        notice=notice,
        **values,
    )


# ------------------------------------------------------------------ Authentication


def _authentication_values(draft: Draft) -> dict[str, Any]:
    fields = fields_of(DESTINATION_KINDS[draft.type])
    values = {f.name: "" if f.secret else _stored_value(draft, f) for f in fields}
    return {"fields": fields, "values": values, "secret_hint": _secret_hints(draft, fields)}


def _stored_value(draft: Draft, f: Field) -> str:
    if f.name == "prefix":
        return draft.prefix
    if f.name == DESTINATION_KINDS[draft.type].container_field:
        return draft.container
    return draft.public.get(f.name, "")


def _secret_hints(draft: Draft, fields: list[Field]) -> dict[str, str]:
    """What a secret field says about the value it keeps when left empty: never the value."""
    hints = {}
    for f in fields:
        if not f.secret:
            continue
        if f.name in draft.given:
            hints[f.name] = "A value you gave in this wizard is kept when you leave this empty."
        elif draft.masked.get(f.name):
            hints[f.name] = f"Stored: {draft.masked[f.name]}. Leave empty to keep it."
        elif draft.editing:
            hints[f.name] = "A value is stored. Leave empty to keep it."
    return hints


def _authenticate(visit: Visit, draft: Draft) -> Response:
    """Verify Authentication, or Save and Continue (which verifies what was not verified yet)."""
    form = _form(visit)
    kind = DESTINATION_KINDS[draft.type]
    try:
        given_secrets = _read_destination(visit, draft, form)
    except InputError as error:
        return _render(visit, draft, "authentication", 400, alert=_explain(error, "Authentication failed"))
    if given_secrets:
        merged = {**_opened(visit, draft), **given_secrets}
        draft.sealed = visit.ctx.integrations.secrets.seal(json.dumps(merged))
        draft.given = sorted(merged)
    where = {key: draft.original.get(key) for key in ("container", "prefix", "public")}
    draft.destination_changed = not draft.editing or bool(draft.sealed) or where != _where(draft)
    action = _one(form, "action")
    if action == "verify" or (draft.destination_changed and not draft.verified):
        try:
            answer = visit.ctx.integrations.verify(visit.account, _complete_destination(visit, draft, kind.name))
        except ExporterError as error:
            draft.verified = False
            _drafts(visit).save(draft)
            return _render(
                visit, draft, "authentication", http_status(error), alert=_explain(error, "Authentication failed")
            )
        draft.verified = True
        if action == "verify":
            _drafts(visit).save(draft)
            return _render(visit, draft, "authentication", notice=_verified_notice(answer))
    draft.steps_done = max(draft.steps_done, 1)
    _drafts(visit).save(draft)
    return redirect(_url(draft, "configure"))


def _read_destination(visit: Visit, draft: Draft, form: dict[str, list[str]]) -> dict[str, Any]:
    """Take the form's destination fields into the draft; return the secret fields given (empty ones keep theirs)."""
    kind = DESTINATION_KINDS[draft.type]
    secrets: dict[str, Any] = {}
    before = _where(draft)
    for f in fields_of(kind):
        value = _one(form, f.name).strip()
        if f.secret:
            if value:
                secrets[f.name] = _json_field(f, value) if f.multiline else value
        elif f.name == "prefix":
            draft.prefix = value
        elif f.name == kind.container_field:
            draft.container = value
        elif value:
            draft.public[f.name] = value
        else:
            draft.public.pop(f.name, None)
    if secrets or _where(draft) != before:
        draft.verified = False  # changed credentials are verified again
    return secrets


def _json_field(f: Field, value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        raise InputError("is not valid JSON: paste the whole key file", field=f"destination.{f.name}") from None


def _where(draft: Draft) -> dict[str, Any]:
    return {"container": draft.container, "prefix": draft.prefix, "public": dict(draft.public)}


def _opened(visit: Visit, draft: Draft) -> dict[str, Any]:
    return json.loads(visit.ctx.integrations.secrets.open(draft.sealed)) if draft.sealed else {}


def _complete_destination(visit: Visit, draft: Draft, kind_name: str) -> dict[str, Any]:
    """The whole destination body to verify: the form's fields, the secrets given, the stored ones for the rest."""
    kind = DESTINATION_KINDS[kind_name]
    credentials: dict[str, Any] = {}
    if draft.editing:
        stored = visit.ctx.repo.get(draft.account, draft.integration_id).destination
        credentials = kind.from_secret(visit.ctx.integrations.secrets.open(stored.sealed_secret))
    credentials.update(draft.public)
    credentials.update(_opened(visit, draft))
    body: dict[str, Any] = {"type": kind.name, "prefix": draft.prefix, kind.container_field: draft.container or None}
    body.update({k: v for k, v in credentials.items() if k in kind.credential_checks and v not in (None, "")})
    return body


def _changed_destination(visit: Visit, draft: Draft) -> dict[str, Any]:
    """An edit's destination change: the fields shown and the secrets given; the service keeps the rest."""
    kind = DESTINATION_KINDS[draft.type]
    body: dict[str, Any] = {"prefix": draft.prefix, kind.container_field: draft.container or None}
    body.update(draft.public)
    body.update(_opened(visit, draft))
    return body


def _verified_notice(answer: dict[str, Any]) -> str:
    test_file = answer.get("test_file") or {}
    if test_file.get("deleted"):
        return f"Authentication verified: the test file {test_file.get('name')} was written and deleted."
    note = answer.get("note") or "the test file could not be deleted"
    return (
        f"Authentication verified: the test file {test_file.get('name')} was written, but it was left in place: {note}."
    )


def _explain(error: ExporterError, heading: str) -> str:
    """An error in the customer's words: which field (by its label), and what is wrong with it."""
    field = (error.field or "").removeprefix("destination.")
    label = LABELS.get(field) or {"prefix": "Path Prefix", "account": "Account"}.get(field, "")
    if field.startswith(("events", "attributes")):
        label = ""
    reason = error.reason if isinstance(error, InputError) else error.message  # the JSON path is for machines
    return f"{heading}. {label + ': ' if label else ''}{reason}"


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


def _configure(visit: Visit, draft: Draft) -> Response:
    form = _form(visit)
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
        check_columns(changes.events or (), changes.attributes or ())
    except InputError as error:
        _drafts(visit).save(draft)
        words = "These selections cannot be exported together" if "collide" in error.message else "Check the selection"
        return _render(visit, draft, "configure", 400, alert=_explain(error, words))
    draft.steps_done = max(draft.steps_done, 2)
    _drafts(visit).save(draft)
    return redirect(_url(draft, "launch"))


# ------------------------------------------------------------------ Launch


def _launch(visit: Visit, draft: Draft) -> Response:
    form = _form(visit)
    draft.name = _one(form, "name").strip() or draft.name
    frequency = _one(form, "frequency_hours")
    draft.frequency_hours = int(frequency) if frequency.isdigit() else draft.frequency_hours
    draft.status = "paused" if _one(form, "status") == "paused" else "active"
    if FILE_FORMATS:
        draft.format = _one(form, "format") or draft.format
    body: dict[str, Any] = {
        "name": draft.name,
        "events": draft.events,
        "attributes": draft.attributes,
        "frequency_hours": draft.frequency_hours,
        "status": draft.status,
    }
    if FILE_FORMATS:
        body["format"] = draft.format
    service = visit.ctx.integrations
    try:
        if draft.editing:
            if draft.status == draft.original.get("status"):
                del body["status"]
            if draft.destination_changed:
                body["destination"] = _changed_destination(visit, draft)
            answer = service.update(draft.account, draft.integration_id, body, if_match=draft.etag or None)
        else:
            body["destination"] = _complete_destination(visit, draft, draft.type)
            answer = service.create(draft.account, body)
    except ExporterError as error:
        _drafts(visit).save(draft)
        heading = "The integration could not be saved" if draft.editing else "The integration could not be launched"
        return _render(visit, draft, "launch", http_status(error), alert=_explain(error, heading))
    if draft.editing:
        message = f"{answer['name']} saved."
    else:
        message = f"{answer['name']} {'saved as paused' if answer['status'] == 'paused' else 'launched'}."
    if answer.get("verification"):
        message += " " + _verified_notice(answer["verification"])
    draft.message = message
    _drafts(visit).save(draft)
    return redirect(account_url(draft.account) + f"?done=launched&draft={quote(draft.id)}")
