"""The wizard's Authentication step: the destination's fields, "Verify Authentication" and "Save and Continue".

A type with a keyless form offers it first ("Keyless (recommended)"), with what to grant the platform's
identity and the commands that do it (exporter/identity.py); "With a key" is the key-based form. The
choice is a link (`?auth=key`) and a hidden field of the form, so it works without JavaScript; editing
opens the way the integration authenticates. The secret fields a user pastes are sealed into the draft
at once and never sent back to the browser; left empty, the value given before (or, editing, the stored
one) stays; a keyless form holds none. Every field is read before any is refused, so a refused field
never empties the others.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..api import http_status
from ..destinations import DESTINATION_KINDS
from ..destinations.common import DestinationKind
from ..errors import ExporterError, InputError
from ..identity import Grant, grant_for
from .drafts import Draft
from .fields import KEY, KEYLESS, Field, auth_methods, fields_of, key_fields, keyless_fields
from .messages import explain
from .steps import LIMIT_REACHED, Again, StepAnswer, drafts, form_value, limit_reached, step_url
from .web import redirect

if TYPE_CHECKING:  # the dispatcher imports this module
    from ..ucd.values import Json
    from .app import Visit

HEADING = "Authentication failed"


METHOD_NAMES = {KEYLESS: "Keyless (recommended)", KEY: "With a key"}


def method(draft: Draft) -> str:
    """How the draft authenticates: its choice, if its type offers it; a key otherwise (a draft from before)."""
    return draft.auth if draft.auth in auth_methods(DESTINATION_KINDS[draft.type]) else KEY


def default_method(visit: Visit, kind: DestinationKind) -> str:
    """A new draft's way: keyless when the type has a keyless form and the operator set that cloud up."""
    if KEYLESS in auth_methods(kind) and _grant(visit, kind.name, "", "", {}) is not None:
        return KEYLESS
    return KEY


def stored_method(kind: DestinationKind, credentials: dict[str, Any]) -> str:
    """The way a stored integration authenticates: a key when any key field is stored."""
    if KEYLESS in auth_methods(kind) and not any(credentials.get(name) for name in key_fields(kind)):
        return KEYLESS
    return KEY


def stored_credentials(visit: Visit, account: str, integration_id: str) -> dict[str, Any]:
    """An integration's credential fields, opened (server-side only: never shown)."""
    stored = visit.ctx.repo.get(account, integration_id).destination
    return DESTINATION_KINDS[stored.type].from_secret(visit.ctx.integrations.secrets.open(stored.sealed_secret))


def _grant(visit: Visit, kind: str, container: str, prefix: str, fields: dict[str, str]) -> Grant | None:
    return grant_for(kind, visit.ctx.identity(visit.account), container, prefix, fields)


def values(visit: Visit, draft: Draft) -> dict[str, object]:
    """What the step's page shows: the ways to authenticate, the chosen one's fields and their values (never a
    secret's), what an empty secret keeps; keyless, what to grant the platform's identity and how."""
    kind = DESTINATION_KINDS[draft.type]
    chosen = visit.request.arg("auth") if visit.request.method in ("GET", "HEAD") else ""
    auth = chosen if chosen in auth_methods(kind) else method(draft)
    fields = fields_of(kind, auth)
    shown = {f.name: "" if f.secret else _stored_value(draft, f) for f in fields}
    grant = _grant(visit, kind.name, draft.container, draft.prefix, draft.public) if auth == KEYLESS else None
    return {
        "fields": fields,
        "values": shown,
        "secret_hint": _secret_hints(draft, fields, auth),
        "auth": auth,
        "methods": [(m, METHOD_NAMES[m]) for m in auth_methods(kind)] if len(auth_methods(kind)) > 1 else [],
        "grant": grant,
        "commands": _numbered(grant),
    }


def _numbered(grant: Grant | None) -> list[dict[str, Any]]:
    """The grant's steps with an id for each command (its copy button names it)."""
    steps, n = [], 0
    for step in grant.steps if grant else ():
        commands = []
        for text in step.commands:
            n += 1
            commands.append({"id": f"command-{n}", "n": n, "text": text})
        steps.append({"text": step.text, "commands": commands})
    return steps


def _stored_value(draft: Draft, f: Field) -> str:
    if f.name == "prefix":
        return draft.prefix
    if f.name == DESTINATION_KINDS[draft.type].container_field:
        return draft.container
    return draft.public.get(f.name, "")


def _secret_hints(draft: Draft, fields: list[Field], auth: str) -> dict[str, str]:
    """What a secret field says about the value it keeps when left empty: never the value."""
    hints = {}
    for f in fields:
        if not f.secret:
            continue
        if f.name in draft.given:
            hints[f.name] = "A value you gave in this wizard is kept when you leave this empty."
        elif not _stored_way(draft, auth):
            continue  # nothing stored for this way (an edit switching from keyless to a key)
        elif draft.masked.get(f.name):
            hints[f.name] = f"Stored: {draft.masked[f.name]}. Leave empty to keep it."
        elif draft.editing:
            hints[f.name] = "A value is stored. Leave empty to keep it."
    return hints


def _stored_way(draft: Draft, auth: str) -> bool:
    """An edit that keeps the way its integration authenticates: its stored credentials stand for empty fields."""
    return draft.editing and draft.original.get("auth", KEY) == auth


def submit(visit: Visit, draft: Draft) -> StepAnswer:
    """Verify Authentication, or Save and Continue (which verifies what was not verified yet)."""
    form = visit.request.form()
    kind = DESTINATION_KINDS[draft.type]
    auth = form_value(form, "auth")
    if auth not in auth_methods(kind):
        auth = method(draft)  # a page from before the choice: the draft's way
    if auth != method(draft):
        draft.verified = False  # another way is verified anew
    draft.auth = auth
    try:
        given_secrets = _read_destination(draft, form)
    except InputError as error:
        drafts(visit).save(draft)  # the fields that were fine stay filled in
        return Again(400, alert=explain(error, HEADING, draft.type))
    if given_secrets:
        merged = {**_opened(visit, draft), **given_secrets}
        draft.sealed = visit.ctx.integrations.secrets.seal(json.dumps(merged))
        draft.given = sorted(merged)
    missing = _missing(draft)
    if missing:  # the container first: required on the form, as on the product page (the API lets a SAS URL name it)
        drafts(visit).save(draft)
        return Again(400, alert=explain(InputError("is required", field=f"destination.{missing}"), HEADING, draft.type))
    where = {key: draft.original.get(key) for key in ("container", "prefix", "public")}
    switched = method(draft) != draft.original.get("auth", KEY)  # an edit to another way: its fields are new
    draft.destination_changed = not draft.editing or bool(draft.sealed) or where != _where(draft) or switched
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


def _missing(draft: Draft) -> str:
    """The first required field of the draft's way left empty (the container first); a secret given in this wizard,
    or stored for the same way, is there."""
    kind = DESTINATION_KINDS[draft.type]
    auth = method(draft)
    required = [f for f in fields_of(kind, auth) if f.required]
    for f in sorted(required, key=lambda f: f.name != kind.container_field):
        if f.name == kind.container_field:
            there = bool(draft.container)
        elif f.secret:
            there = f.name in draft.given or _stored_way(draft, auth)
        else:
            there = bool(draft.public.get(f.name))
        if not there:
            return f.name
    return ""


def _read_destination(draft: Draft, form: dict[str, list[str]]) -> dict[str, Json]:
    """Take the form's destination fields into the draft; return the secret fields given (empty ones keep theirs).

    The other way's fields are dropped: a keyless draft holds no secret, and a key-based one no keyless field.
    Every field is taken before a pasted key is parsed, so a malformed key leaves the others' values."""
    kind = DESTINATION_KINDS[draft.type]
    given: dict[str, str] = {}
    before = _where(draft)
    fields = fields_of(kind, method(draft))
    for name in set(kind.credential_checks) - {f.name for f in fields}:
        draft.public.pop(name, None)
    if not any(f.secret for f in fields):
        draft.sealed, draft.given = "", []
    for f in fields:
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
    return {f.name: _json_field(f, given[f.name]) if f.multiline else given[f.name] for f in fields if f.name in given}


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
    """The whole destination body to verify: the form's fields, the secrets given, the stored ones for the rest
    (only the draft's way's: switching from a key to keyless leaves the key behind)."""
    kind = DESTINATION_KINDS[draft.type]
    credentials: dict[str, Any] = (
        stored_credentials(visit, draft.account, draft.integration_id) if draft.editing else {}
    )
    credentials.update(draft.public)
    credentials.update(_opened(visit, draft))
    shown = {f.name for f in fields_of(kind, method(draft))}
    body: dict[str, Json] = {"type": kind.name, "prefix": draft.prefix, kind.container_field: draft.container or None}
    body.update(
        {k: v for k, v in credentials.items() if k in shown & set(kind.credential_checks) and v not in (None, "")}
    )
    return body


def changed_destination(visit: Visit, draft: Draft) -> dict[str, Json]:
    """An edit's destination change: the fields shown and the secrets given; the service keeps the rest. A keyless
    field left empty is sent as null (GCS impersonating no one any more), so the stored one does not stay."""
    kind = DESTINATION_KINDS[draft.type]
    body: dict[str, Json] = {"prefix": draft.prefix, kind.container_field: draft.container or None}
    if method(draft) == KEYLESS:
        body.update({name: None for name in keyless_fields(kind)})
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
