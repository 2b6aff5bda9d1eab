"""Customer destinations. Azure Blob today; S3 and GCS share the integration limit and this interface."""
from __future__ import annotations

from typing import Any, Protocol

from ..errors import InputError
from .azure_blob import AzureBlobDestination

DESTINATION_TYPES = ("azure_blob", "s3", "gcs")
AVAILABLE_TYPES = ("azure_blob",)


class Destination(Protocol):
    """Where an integration's files go."""

    prefix: str  # files go under it (see exporter.export.naming)

    def verify(self, test_file_name: str) -> dict[str, Any]: ...
    def stage_block(self, path: str, block_id: str, data: bytes) -> None: ...
    def commit_blocks(self, path: str, block_ids: list[str]) -> None: ...


def open_destination(kind: str, connection_string: str, container: str, prefix: str) -> Destination:
    """Build a destination client from its (decrypted) parameters."""
    if kind == "azure_blob":
        return AzureBlobDestination(connection_string, container, prefix)
    raise InputError(f"{kind!r} is not available yet; available: {', '.join(AVAILABLE_TYPES)}", field="destination.type")
