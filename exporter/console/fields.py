"""The wizard's Authentication fields per destination type, taken from the types' own declarations.

Which fields a type has, which are required, what its container is called, and what a person reads
(the type's name, each field's label and hint, whether a field is secret: never sent back to the
browser; left empty, the stored value stays) all come from its `DestinationKind` and its `Form`
(exporter/destinations/common.py). The container or bucket is required on the form, as on the
product page, even where the API lets a SAS container URL name it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..destinations import DESTINATION_KINDS
from ..destinations.common import DestinationKind
from ..errors import InputError
from ..export.formats import DEFAULT_FORMAT, FORMAT_NAMES

KEYLESS, KEY = "keyless", "key"  # the Authentication step's two ways: the platform's identity, or a key


def type_name(kind: str) -> str:
    """A type's name for people ("Amazon S3"); an unknown one (no longer registered) as it is stored."""
    found = DESTINATION_KINDS.get(kind)
    return found.form.title if found else kind


# The Launch step's "File Format" options: the API's one list of formats, with a reader's label each.
FILE_FORMATS: tuple[str, ...] = FORMAT_NAMES
DEFAULT_FILE_FORMAT = DEFAULT_FORMAT.value
FORMAT_LABELS = {
    "csv": "CSV",
    "csv.gz": "CSV, gzip-compressed",
    "parquet": "Parquet",
    "jsonl.gz": "JSON Lines, gzip-compressed",
}


@dataclass(frozen=True)
class Field:
    name: str  # the API body's field name
    label: str
    required: bool
    secret: bool
    multiline: bool
    hint: str = ""

    @property
    def input_id(self) -> str:
        return f"f-{self.name}"


def key_fields(kind: DestinationKind) -> frozenset[str]:
    """The fields of the kind's key-based credential forms: a form holding a secret field (every credential field,
    for a kind that declares no forms)."""
    if not kind.credential_forms:
        return frozenset(kind.credential_checks)
    return frozenset(name for form in kind.credential_forms if form & kind.form.secret for name in form)


def keyless_fields(kind: DestinationKind) -> frozenset[str]:
    """The fields of the kind's keyless credential forms: a form without any secret field (the platform's identity)."""
    return frozenset(name for form in kind.credential_forms if not form & kind.form.secret for name in form)


def auth_methods(kind: DestinationKind) -> tuple[str, ...]:
    """How a destination of this type may authenticate on the form: keyless first, when it has a keyless form."""
    return (KEYLESS, KEY) if keyless_fields(kind) else (KEY,)


def _keyless_optional(kind: DestinationKind) -> bool:
    """Whether a body without any credential field is whole (GCS: the platform's own identity, impersonating no one):
    the keyless form's fields are then optional. The kind's own cross-field check says."""
    if kind.check_together is None:
        return False
    try:
        kind.check_together({}, False)
    except InputError:
        return False
    return True


def fields_of(kind: DestinationKind, auth: str = KEY) -> list[Field]:
    """The Authentication step's fields of a type with one way to authenticate (`auth`): its container or bucket,
    the credential fields every form shares (a region, an endpoint), that way's own, the prefix."""
    others = keyless_fields(kind) if auth == KEY else key_fields(kind)
    own = key_fields(kind) if auth == KEY else keyless_fields(kind)
    names = [kind.container_field, *(name for name in kind.credential_checks if name not in others)]
    form = kind.form
    optional_own = auth == KEYLESS and _keyless_optional(kind)
    fields = [
        Field(
            name,
            form.labels[name],
            # The product page requires the container; the chosen form's key (or keyless fields) are required on it.
            name in kind.required or name == kind.container_field or (name in own and not optional_own),
            name in form.secret,
            name in form.json,
            form.hints.get(name, ""),
        )
        for name in names
    ]
    fields.append(
        Field(
            "prefix",
            form.prefix_label,
            False,
            False,
            False,
            "Empty: the files go to the root of the container or bucket.",
        )
    )

    def place(f: Field) -> int:
        """The product page's order: the way's required fields (and a region), where the files go, the rest."""
        if (f.name in own and f.required) or f.name == "region":
            return 0
        if f.name == kind.container_field:
            return 1
        if f.name == "prefix":
            return 4
        return 2 if f.name in own else 3

    return sorted(fields, key=place)
