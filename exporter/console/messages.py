"""The console's sentences: an error in the customer's words, naming the field as the form labels it.

The API's errors name a field by its JSON path (`destination.bucket`) and start in lower case, for
machines; a person reads "Authentication failed. Bucket Name: is required." instead.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..destinations import DESTINATION_KINDS
from ..errors import ExporterError, InputError, LimitError, NotFoundError
from .fields import auth_methods, fields_of
from .steps import LIMIT_REACHED

NO_SUCH_INTEGRATION = "No such integration: it may have been deleted."
# The Launch step's fields (the Authentication step's come from fields.py, per destination type).
LAUNCH_LABELS = {
    "name": "Integration Name",
    "frequency_hours": "Sync Frequency",
    "status": "Activation Status",
    "format": "File Format",
}


def sentence(text: str) -> str:
    """A sentence: its first letter a capital, and a full stop unless it ends in one already."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def field_labels(kind: str) -> dict[str, str]:
    """A wizard's fields by their names in the API body, and their labels on the forms of destination type `kind`
    (keyless and with a key)."""
    found = DESTINATION_KINDS[kind]
    return {**LAUNCH_LABELS, **{f.name: f.label for auth in auth_methods(found) for f in fields_of(found, auth)}}


def container_field_of(kind: str) -> str:
    """What a body of type `kind` calls its container: "container" or "bucket"."""
    return DESTINATION_KINDS[kind].container_field


def explain(error: ExporterError, heading: str, kind: str = "") -> str:
    """`heading`, then what is wrong: which field (by its label on `kind`'s form) and why."""
    if isinstance(error, LimitError):
        return f"{heading}. {LIMIT_REACHED}"
    if isinstance(error, NotFoundError):
        return f"{heading}. {NO_SUCH_INTEGRATION}"
    reason = error.reason if isinstance(error, InputError) else error.message  # the JSON path is for machines
    path = (error.field or "").removeprefix("destination.")
    name, _, inner = path.partition(".")
    label = field_labels(kind).get(name, "") if kind else ""
    if label and inner:  # a part of a field, such as a key file's private_key
        reason = f"{inner} {reason}"
    return f"{heading}. {sentence(f'{label}: {reason}' if label else reason)}"


def when_text(when: datetime | int) -> str:
    """A moment as the console writes it (UTC, to the minute; the caller adds "UTC")."""
    moment = when if isinstance(when, datetime) else datetime.fromtimestamp(when, tz=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
