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
from ..export.formats import DEFAULT_FORMAT, FORMAT_NAMES


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


def fields_of(kind: DestinationKind) -> list[Field]:
    """The Authentication step's fields of a type: its container or bucket, its credentials, the prefix."""
    names = [kind.container_field, *kind.credential_checks]
    form = kind.form
    fields = [
        Field(
            name,
            form.labels[name],
            name in kind.required or name == kind.container_field,  # the product page requires the container
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
    # The product page's order for Azure Blob: the credentials first, then where the files go.
    return sorted(fields, key=lambda f: (not f.secret and f.name != "region", f.name == "prefix"))
