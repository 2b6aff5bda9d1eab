"""Customer destinations: Azure Blob, Amazon S3 and Google Cloud Storage, behind the Destination protocol.

Each type is a `DestinationKind` (exporter/destinations/common.py): its body fields and their checks,
its secret, its client. They share the integration limit, the file names and bytes, and the protocol
(exporter/export/destination.py).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError
from ..export.destination import Destination
from . import azure_blob, gcs, s3
from .common import DestinationKind

DESTINATION_KINDS: dict[str, DestinationKind] = {kind.name: kind for kind in (azure_blob.KIND, s3.KIND, gcs.KIND)}
DESTINATION_TYPES = tuple(DESTINATION_KINDS)

# (type, secret, container (None: named by the secret, as a SAS URL does), prefix) -> a destination client
DestinationFactory = Callable[[str, str, str | None, str], Destination]


def destination_kind(kind: str, field: str = "destination.type") -> DestinationKind:
    """The destination type named `kind`; anything else is refused naming the field."""
    found = DESTINATION_KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise InputError(f"must be one of {', '.join(DESTINATION_TYPES)}", field=field)
    return found


def open_destination(kind: str, secret: str, container: str | None, prefix: str) -> Destination:
    """Build a destination client from its (decrypted) parameters: the one factory."""
    return destination_kind(kind).open(secret, container, prefix)
