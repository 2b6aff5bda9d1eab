"""The service's staging container for the parts of split windows a destination cannot take in place (GCS).

A GCS resumable session takes bytes strictly in order, and joining objects (`compose`) needs
`storage.objects.get` and `.delete`, more than customers grant (objects.create only). So each part
of a split GCS window is exported, resumably and side by side with the others, into a block blob of
its own in the service's staging container (`StagingArea`: the Azure Blob protocol, blocks staged,
then committed as the part's blob); the GCS destination relays them into its file at the commit
(exporter/destinations/gcs_relay.py). The staged blobs are deleted once the window is forgotten; a
lifecycle rule on the container removes what an abandoned plan left (docs/architecture.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, ContainerClient

from ..destinations.azure_blob import block_id, check_staged
from ..export.destination import UploadLost, UploadState
from ..export.progress import staged_prefix

log = logging.getLogger(__name__)


def staged_name(account: str, integration_id: str, window_start: int, part: int) -> str:
    """The staging blob of one part of a split window."""
    return f"{staged_prefix(account, integration_id, window_start)}part-{part:03d}"


class StagingArea:
    """The service's staging container, as a destination of blocks: a part's blocks, then its blob."""

    prefix = ""  # parts are placed by name (staged_name), never under a customer's prefix

    def __init__(self, container: ContainerClient):
        self.container = container

    def stage_block(self, path: str, index: int, data: bytes) -> UploadState:
        self.container.get_blob_client(path).stage_block(block_id(index), data, length=len(data))
        return UploadState()  # block ids are the names: nothing else to keep

    def resume_upload(self, path: str, state: UploadState, staged: Sequence[int]) -> None:
        """The part's blocks must still be there: uncommitted, or committed by a duplicate delivery."""
        check_staged(self.container.get_blob_client(path), staged, "all")

    def commit_blocks(self, path: str, count: int) -> None:
        """The part's blob: its blocks in order (a repeated commit lists the same blocks, same bytes)."""
        self.container.get_blob_client(path).commit_block_list([BlobBlock(block_id(i)) for i in range(count)])

    def abandon_blocks(self, path: str) -> None:
        """Nothing to do: the part's blocks are kept for its next delivery, and the lifecycle rule ends them."""

    def read(self, name: str, offset: int, length: int) -> bytes:
        """One piece of a part's blob; UploadLost if the blob is gone or shorter than its part recorded."""
        try:
            data = self.container.get_blob_client(name).download_blob(offset, length).readall()
        except ResourceNotFoundError:
            raise UploadLost() from None
        if len(data) != length:
            raise UploadLost()
        return data

    def remove(self, prefix: str) -> None:
        """Delete the staging blobs under `prefix`; best effort (the lifecycle rule removes what stays)."""
        try:
            for blob in self.container.list_blobs(name_starts_with=prefix):
                self.container.delete_blob(blob.name)
        except AzureError as error:
            log.warning("could not delete the staged parts of a window (%s)", type(error).__name__)
