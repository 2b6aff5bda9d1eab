"""The wizard's Authentication fields per destination type, taken from the types' own declarations.

Which fields a type has, which are required, and what its container is called come from its
`DestinationKind` (exporter/destinations/common.py); this module only adds what a person reads:
the label (the product page's words for Azure Blob), and whether a field is secret (never sent
back to the browser; left empty, the stored value stays). The container or bucket is required on
the form, as on the product page, even where the API lets a SAS container URL name it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..destinations.common import DestinationKind
from ..export.formats import DEFAULT_FORMAT, FORMAT_NAMES

TYPE_NAMES = {
    "azure_blob": "Microsoft Azure Blob Storage",
    "s3": "Amazon S3",
    "gcs": "Google Cloud Storage",
}
LABELS = {
    "connection_string": "Connection String",
    "container": "Container Name",
    "bucket": "Bucket Name",
    "region": "Region",
    "access_key_id": "Access Key ID",
    "secret_access_key": "Secret Access Key",
    "endpoint_url": "Endpoint URL",
    "service_account_key": "Service Account Key (JSON)",
}
PREFIX_LABELS = {"azure_blob": "Blob Path Prefix"}
PREFIX_LABEL = "Path Prefix"
# KEYLESS HOOK (issue 24): the console offers the key-based forms only, and requires their key as before; the
# keyless fields (a role, an identity to impersonate, an account URL with a tenant) are the API's and the CLI's
# for now (docs/keyless.md).
KEYLESS_FIELDS = frozenset({"role_arn", "impersonate", "account_url", "tenant_id"})
KEY_FIELDS = frozenset({"connection_string", "access_key_id", "secret_access_key", "service_account_key"})
# Credentials shown only masked (an access key id too: the API masks it), so never filled in.
SECRET = frozenset({"connection_string", "access_key_id", "secret_access_key", "service_account_key"})
JSON_FIELDS = frozenset({"service_account_key"})  # a JSON document pasted whole: sent as an object
HINTS = {
    "connection_string": "From the storage account's Access keys page, or a SAS connection string.",
    "service_account_key": "Paste the whole JSON key file of the service account.",
    "endpoint_url": "Only for S3-compatible storage or an emulator; leave empty for the cloud service.",
}
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
    fields = [
        Field(
            name,
            LABELS[name],
            # The product page requires the container; the key is required on the console's key-based form.
            name in kind.required or name == kind.container_field or name in KEY_FIELDS,
            name in SECRET,
            name in JSON_FIELDS,
            HINTS.get(name, ""),
        )
        for name in names
    ]
    fields.append(
        Field(
            "prefix",
            PREFIX_LABELS.get(kind.name, PREFIX_LABEL),
            False,
            False,
            False,
            "Empty: the files go to the root of the container or bucket.",
        )
    )
    # The product page's order for Azure Blob: the credentials first, then where the files go.
    return sorted(fields, key=lambda f: (not f.secret and f.name != "region", f.name == "prefix"))
