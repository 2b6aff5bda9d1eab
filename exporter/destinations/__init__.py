"""Customer destinations: Azure Blob today; S3 and GCS share the integration limit and the Destination protocol."""
from __future__ import annotations

from typing import Callable

from ..errors import InputError
from ..export.destination import Destination
from .azure_blob import AzureBlobDestination

DESTINATION_TYPES = ("azure_blob", "s3", "gcs")
AVAILABLE_TYPES = ("azure_blob",)

# (type, secret, container (None: named by the secret, as a SAS URL does), prefix) -> a destination client
DestinationFactory = Callable[[str, str, str | None, str], Destination]


def open_destination(kind: str, connection_string: str, container: str | None, prefix: str) -> Destination:
    """Build a destination client from its (decrypted) parameters: the one factory."""
    if kind == "azure_blob":
        return AzureBlobDestination(connection_string, container, prefix)
    raise InputError(f"{kind!r} is not available yet; available: {', '.join(AVAILABLE_TYPES)}", field="destination.type")
