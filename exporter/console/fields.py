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


# KEYLESS HOOK (issue 24): the console offers the key-based forms only, and requires their key as before; the
# keyless fields (a role, an identity to impersonate, an account URL with a tenant) are the API's and the CLI's
# for now (docs/keyless.md). Their labels are in each kind's Form all the same.
KEYLESS_FIELDS = frozenset({"role_arn", "impersonate", "account_url", "tenant_id"})
KEY_FIELDS = frozenset({"connection_string", "access_key_id", "secret_access_key", "service_account_key"})
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
    names = [kind.container_field, *(name for name in kind.credential_checks if name not in KEYLESS_FIELDS)]
    form = kind.form
    fields = [
        Field(
            name,
            form.labels[name],
            # The product page requires the container; the key is required on the console's key-based form.
            name in kind.required or name == kind.container_field or name in KEY_FIELDS,
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
