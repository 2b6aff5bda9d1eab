"""Customer destinations as the soak sees them: what an integration is given, how the customer's key
is revoked and restored, and the soak's own reader of the delivered files.

Only Azure Blob exists today. A new kind (S3, GCS) is one more `Site`: its integration body, its
revocation (at its own fault proxy) and its reader, which lists committed objects only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from exporter.local.faultproxy import FaultProxy, Rule


@dataclass(frozen=True)
class Delivered:
    """One object found at a destination."""

    path: str
    data: bytes
    size: int  # the size the service lists for the committed object


class Site(Protocol):
    name: str

    def destination(self, prefix: str) -> dict[str, Any]: ...
    def revoke(self) -> None: ...
    def restore(self) -> None: ...
    def files(self) -> Iterator[Delivered]: ...
    def uncommitted(self) -> list[str]: ...


class AzureBlobSite:
    """A customer's container on the customers' Azurite, reached by integrations through a fault proxy."""

    kind = "azure_blob"

    def __init__(self, name: str, container: str, faulty_connection: str, direct_connection: str, proxy: FaultProxy):
        self.name = name
        self.container = container
        self.faulty_connection = faulty_connection
        self.proxy = proxy
        self.client = BlobServiceClient.from_connection_string(direct_connection).get_container_client(container)
        self._revocation: Rule | None = None
        try:
            self.client.create_container()
        except ResourceExistsError:
            pass

    def destination(self, prefix: str) -> dict[str, Any]:
        return {
            "type": self.kind,
            "connection_string": self.faulty_connection,
            "container": self.container,
            "prefix": prefix,
        }

    def revoke(self) -> None:
        """The customer rotates the key we hold: from now on the server refuses our signatures (403)."""
        if self._revocation is None:
            account_path = f"/{self.client.account_name}/{self.container}"
            self._revocation = self.proxy.add(Rule("bad_signature", path=rf"^{account_path}(/|\?|$)", times=10**9))

    def restore(self) -> None:
        if self._revocation is not None:
            self.proxy.remove(self._revocation)
            self._revocation = None

    def files(self) -> Iterator[Delivered]:
        """Every committed blob (a listing never shows a blob whose block list was not committed)."""
        for blob in self.client.list_blobs():
            yield Delivered(blob.name, self.client.download_blob(blob.name).readall(), blob.size)

    def uncommitted(self) -> list[str]:
        """Blobs with staged blocks and no committed version (a writer died before its commit)."""
        committed = {b.name for b in self.client.list_blobs()}
        return [b.name for b in self.client.list_blobs(include=["uncommittedblobs"]) if b.name not in committed]
