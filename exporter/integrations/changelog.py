"""What changed between two stored versions of an integration, in the history's words (exporter/history.py).

Values are the ones the API shows (a masked client e-mail, a role); a secret field of the destination's
type (its form's `secret` fields: the connection string, the S3 access key, the GCS service account key,
and those of any type registered later) is compared opened, and only said to have changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..history import ABSENT, Change
from .model import Integration, destination_kind

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from ..ucd.values import Json

# What the worker moves (delivery state) or what follows from a change (times): not a change by itself.
NOT_CHANGES = frozenset(
    {"updated_at", "created_at", "activated_at", "last_success_end", "last_error", "queued_until", "slot", "kind"}
)
STATUS_ACTIONS = {
    "active": "resumed",
    "paused": "paused",
    "credential_error": "stopped",
    "destination_error": "stopped",
}


def version(integration: Integration | None) -> str:
    """A digest of what a customer or operator changes (the sealed secret included: a new seal is a new version)."""
    if integration is None:
        return ABSENT
    stored = {k: v for k, v in integration.record().items() if k not in NOT_CHANGES}
    return hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()[:32]


def changes(old: Integration | None, new: Integration, open_secret: Callable[[str], str]) -> tuple[Change, ...]:
    """Field by field, old -> new (a create: every field, from null)."""
    before = _shown(old, open_secret) if old is not None else {}
    after = _shown(new, open_secret)
    hidden = secret_fields(new)
    found = []
    for name in sorted(set(before) | set(after), key=_order):
        was, now = before.get(name), after.get(name)
        if was == now:
            continue
        secret = name.removeprefix("destination.") in hidden or name == "notify.secret"
        found.append(Change(name, secret=True) if secret else Change.of(name, was, now))
    return tuple(found)


def action(old: Integration | None, new: Integration | None, found: tuple[Change, ...]) -> str:
    """The change in a word: created, deleted, paused, resumed, stopped, credentials verified, updated."""
    if old is None:
        return "created"
    if new is None:
        return "deleted"
    if [c.field for c in found] == ["status"]:
        return STATUS_ACTIONS.get(new.status.value, "updated")
    return "updated" if found else "credentials verified"


def secret_fields(integration: Integration) -> frozenset[str]:
    """The credential fields shown only as "changed", whatever the API shows of them: its type's secret ones."""
    return destination_kind(integration.destination.type).form.secret


def _shown(integration: Integration, open_secret: Callable[[str], str]) -> dict[str, Json]:
    """The integration as the history compares it: flat fields, secrets opened (compared, never kept)."""
    body = integration.to_json()
    fields: dict[str, Json] = {
        k: body[k] for k in ("name", "events", "attributes", "frequency_hours", "format", "manifest", "status")
    }
    fields.update({f"destination.{k}": v for k, v in body["destination"].items()})
    if integration.notify is not None:  # the signing secret: only said to have changed (a new one is a new seal)
        fields.update({f"notify.{k}": v for k, v in integration.notify.to_json().items()})
        fields["notify.secret"] = hashlib.sha256(integration.notify.sealed_secret.encode()).hexdigest()
    kind = destination_kind(integration.destination.type)
    opened = kind.from_secret(open_secret(integration.destination.sealed_secret))
    for name in secret_fields(integration) & set(opened):
        # Only a digest takes part, so a value compared by mistake can never carry the secret out.
        fields[f"destination.{name}"] = hashlib.sha256(json.dumps(opened[name], sort_keys=True).encode()).hexdigest()
    return fields


def _order(name: str) -> tuple[int, str]:
    return (1 if name.startswith("destination.") else 0, name)
