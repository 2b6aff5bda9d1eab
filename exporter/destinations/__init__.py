"""Customer destinations: Azure Blob, Amazon S3 and Google Cloud Storage, behind the Destination protocol.

Each type is a `DestinationKind` (exporter/destinations/common.py): its body fields and their checks,
its secret, its client, its console form and the name of its local tools. They share the integration
limit, the file names and bytes, and the protocol (exporter/export/destination.py). A type is its module
plus its line below: the API's checks, the console's fields and the CLI's choices all come from the
registered kinds.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError
from ..export.destination import Destination
from . import azure_blob, gcs, s3
from .common import DestinationKind

DESTINATION_KINDS: dict[str, DestinationKind] = {}

# (type, secret, container (None: named by the secret, as a SAS URL does), prefix) -> a destination client
DestinationFactory = Callable[[str, str, str | None, str], Destination]


def register(kind: DestinationKind) -> None:
    """Offer a destination type everywhere: the API, the console, the CLI, the demo."""
    if kind.name in DESTINATION_KINDS:
        raise ValueError(f"destination type {kind.name!r} is registered already")
    DESTINATION_KINDS[kind.name] = kind


def unregister(name: str) -> None:
    """Withdraw a registered type (tests that register one of their own)."""
    DESTINATION_KINDS.pop(name, None)


register(azure_blob.KIND)
register(s3.KIND)
register(gcs.KIND)


def destination_types() -> tuple[str, ...]:
    """The registered types' names, in the order they were registered (the first is the default)."""
    return tuple(DESTINATION_KINDS)


def destination_fields() -> set[str]:
    """Every field a destination body of any registered type may have."""
    return {"type", "prefix"}.union(*(kind.parameter_fields for kind in DESTINATION_KINDS.values()))


def destination_kind(kind: object, field: str = "destination.type") -> DestinationKind:
    """The destination type named `kind`; anything else is refused naming the field."""
    found = DESTINATION_KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise InputError(f"must be one of {', '.join(destination_types())}", field=field)
    return found


def open_destination(kind: str, secret: str, container: str | None, prefix: str) -> Destination:
    """Build a destination client from its (decrypted) parameters: the one factory."""
    return destination_kind(kind).open(secret, container, prefix)
