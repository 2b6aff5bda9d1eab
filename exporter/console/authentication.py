"""The wizard's Authentication step: the destination's fields, "Verify Authentication" and "Save and Continue".

The secret fields a user pastes are sealed into the draft at once and never sent back to the browser;
left empty, the value given before (or, editing, the stored one) stays. Every field is read before any
is refused, so a refused field never empties the others.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..api import http_status
from ..destinations import DESTINATION_KINDS
from ..errors import ExporterError, InputError
from .drafts import Draft
from .fields import Field, fields_of
from .messages import explain
from .steps import LIMIT_REACHED, Again, StepAnswer, drafts, form_value, limit_reached, step_url
from .web import redirect

if TYPE_CHECKING:  # the dispatcher imports this module
    from ..ucd.values import Json
    from .app import Visit

HEADING = "Authentication failed"


def values(draft: Draft) -> dict[str, object]:
    """What the step's page shows: the fields, their values (never a secret's), what an empty secret keeps."""
    fields = fields_of(DESTINATION_KINDS[draft.type])
    shown = {f.name: "" if f.secret else _stored_value(draft, f) for f in fields}
    return {"fields": fields, "values": shown, "secret_hint": _secret_hints(draft, fields)}


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


def submit(visit: Visit, draft: Draft) -> StepAnswer:
    """Verify Authentication, or Save and Continue (which verifies what was not verified yet)."""
    form = visit.request.form()
    kind = DESTINATION_KINDS[draft.type]
    try:
        given_secrets = _read_destination(draft, form)
    except InputError as error:
        drafts(visit).save(draft)  # the fields that were fine stay filled in
        return Again(400, alert=explain(error, HEADING, draft.type))
    if given_secrets:
        merged = {**_opened(visit, draft), **given_secrets}
        draft.sealed = visit.ctx.integrations.secrets.seal(json.dumps(merged))
        draft.given = sorted(merged)
    if not draft.container:  # required on the form, as on the product page (the API lets a SAS URL name it)
        drafts(visit).save(draft)
        missing = InputError("is required", field=f"destination.{kind.container_field}")
        return Again(400, alert=explain(missing, HEADING, draft.type))
    where = {key: draft.original.get(key) for key in ("container", "prefix", "public")}
    draft.destination_changed = not draft.editing or bool(draft.sealed) or where != _where(draft)
    action = form_value(form, "action")
    if action == "verify" or (draft.destination_changed and not draft.verified):
        if not draft.editing and limit_reached(visit):
            drafts(visit).save(draft)
            return Again(409, alert=f"{HEADING}. {LIMIT_REACHED}")
        try:
            answer = visit.ctx.integrations.verify(visit.account, complete_destination(visit, draft))
        except ExporterError as error:
            draft.verified = False
            drafts(visit).save(draft)
            return Again(http_status(error), alert=explain(error, HEADING, draft.type))
        draft.verified = True
        if action == "verify":
            drafts(visit).save(draft)
            return Again(notice=verified_notice(answer))
    draft.steps_done = max(draft.steps_done, 1)
    drafts(visit).save(draft)
    return redirect(step_url(draft, "configure"))


def _read_destination(draft: Draft, form: dict[str, list[str]]) -> dict[str, Json]:
    """Take the form's destination fields into the draft; return the secret fields given (empty ones keep theirs).

    Every field is taken before a pasted key is parsed, so a malformed key leaves the others' values."""
    kind = DESTINATION_KINDS[draft.type]
    given: dict[str, str] = {}
    before = _where(draft)
    for f in fields_of(kind):
        value = form_value(form, f.name).strip()
        if f.secret:
            if value:
                given[f.name] = value
        elif f.name == "prefix":
            draft.prefix = value
        elif f.name == kind.container_field:
            draft.container = value
        elif value:
            draft.public[f.name] = value
        else:
            draft.public.pop(f.name, None)
    if given or _where(draft) != before:
        draft.verified = False  # changed credentials are verified again
    return {
        f.name: _json_field(f, given[f.name]) if f.multiline else given[f.name]
        for f in fields_of(kind)
        if f.name in given
    }


def _json_field(f: Field, value: str) -> Json:
    try:
        return json.loads(value)
    except ValueError:
        raise InputError("is not valid JSON: paste the whole key file", field=f"destination.{f.name}") from None


def _where(draft: Draft) -> dict[str, str | dict[str, str]]:
    return {"container": draft.container, "prefix": draft.prefix, "public": dict(draft.public)}


def _opened(visit: Visit, draft: Draft) -> dict[str, Json]:
    return json.loads(visit.ctx.integrations.secrets.open(draft.sealed)) if draft.sealed else {}


def complete_destination(visit: Visit, draft: Draft) -> dict[str, Json]:
    """The whole destination body to verify: the form's fields, the secrets given, the stored ones for the rest."""
    kind = DESTINATION_KINDS[draft.type]
    credentials: dict[str, Any] = {}
    if draft.editing:
        stored = visit.ctx.repo.get(draft.account, draft.integration_id).destination
        credentials = kind.from_secret(visit.ctx.integrations.secrets.open(stored.sealed_secret))
    credentials.update(draft.public)
    credentials.update(_opened(visit, draft))
    body: dict[str, Json] = {"type": kind.name, "prefix": draft.prefix, kind.container_field: draft.container or None}
    body.update({k: v for k, v in credentials.items() if k in kind.credential_checks and v not in (None, "")})
    return body


def changed_destination(visit: Visit, draft: Draft) -> dict[str, Json]:
    """An edit's destination change: the fields shown and the secrets given; the service keeps the rest."""
    kind = DESTINATION_KINDS[draft.type]
    body: dict[str, Json] = {"prefix": draft.prefix, kind.container_field: draft.container or None}
    body.update(draft.public)
    body.update(_opened(visit, draft))
    return body


def verified_notice(answer: dict[str, Any]) -> str:
    test_file = answer.get("test_file") or {}
    if test_file.get("deleted"):
        return f"Authentication verified: the test file {test_file.get('name')} was written and deleted."
    note = answer.get("note") or "the test file could not be deleted"
    return (
        f"Authentication verified: the test file {test_file.get('name')} was written, but it was left in place: {note}."
    )
