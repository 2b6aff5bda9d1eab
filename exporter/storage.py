"""The app's own storage account (AzureWebJobsStorage): clients built once and shared."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from .errors import ConfigurationError
from .settings import Settings

INTEGRATIONS_TABLE = "integrations"
RUNS_TABLE = "runs"
DUE_TABLE = "due"  # exporter/integrations/due.py
UCD_EVENTS_TABLE = "ucdevents"
UCD_SEGMENTS_TABLE = "ucdsegments"
UCD_PROFILES_TABLE = "ucdprofiles"
UCD_CATALOG_TABLE = "ucdcatalog"
MEMBERS_TABLE = "members"  # exporter/members.py
DRAFTS_TABLE = "consoledrafts"  # exporter/console/drafts.py
HISTORY_TABLE = "history"  # exporter/history.py
NOTIFY_ATTEMPTS_TABLE = "notifyattempts"  # exporter/notifications/attempts.py
IDENTITIES_TABLE = "identities"  # exporter/identity.py: each account's AWS external id
ALL_TABLES = (
    INTEGRATIONS_TABLE,
    RUNS_TABLE,
    DUE_TABLE,
    UCD_EVENTS_TABLE,
    UCD_SEGMENTS_TABLE,
    UCD_PROFILES_TABLE,
    UCD_CATALOG_TABLE,
    MEMBERS_TABLE,
    DRAFTS_TABLE,
    HISTORY_TABLE,
    NOTIFY_ATTEMPTS_TABLE,
    IDENTITIES_TABLE,
)


@dataclass
class Storage:
    """Blob, Queue and Table clients for the app's storage account."""

    settings: Settings
    _tables: dict[str, TableClient] = field(default_factory=dict)
    _queues: dict[str, QueueClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        try:
            self._connect()
        except ValueError:  # the SDKs' word for a malformed connection string or service URI; its text is not echoed
            expected = (
                "a storage connection string such as DefaultEndpointsProtocol=https;AccountName=...;AccountKey=..."
                if self.settings.storage_connection
                else "the https:// URI of the storage account's service"
            )
            raise ConfigurationError(
                f"is malformed or incomplete: expected {expected}", field=_setting(self.settings)
            ) from None

    def _connect(self) -> None:
        settings = self.settings
        if settings.storage_connection:
            conn = settings.storage_connection
            self.blobs = BlobServiceClient.from_connection_string(conn)
            self.table_service = TableServiceClient.from_connection_string(conn)
            self._queue_client = lambda name, **kw: QueueClient.from_connection_string(conn, name, **kw)
        else:
            credential = _managed_identity(settings.storage_client_id)
            self.blobs = BlobServiceClient(settings.storage_blob_uri, credential=credential)
            self.table_service = TableServiceClient(settings.storage_table_uri, credential=credential)
            self._queue_client = lambda name, **kw: QueueClient(
                settings.storage_queue_uri, name, credential=credential, **kw
            )

    def table(self, name: str) -> TableClient:
        with self._lock:
            client = self._tables.get(name)
            if client is None:
                client = self.table_service.get_table_client(self.settings.table(name))
                self._tables[name] = client
            return client

    def ucd_container(self) -> ContainerClient:
        return self.blobs.get_container_client(self.settings.ucd_container)

    def staging_container(self) -> ContainerClient:
        return self.blobs.get_container_client(self.settings.staging_container)

    def queue(self, name: str | None = None) -> QueueClient:
        """A queue client speaking the Functions host's Base64 message encoding (one per queue)."""
        name = name or self.settings.queue_name
        with self._lock:
            client = self._queues.get(name)
            if client is None:
                client = self._queue_client(
                    name, message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
                )
                self._queues[name] = client
            return client

    def ensure(self) -> Storage:
        """Create the tables, queues and the UCD and staging containers if missing (idempotent)."""
        for name in ALL_TABLES:
            try:
                self.table_service.create_table(self.settings.table(name))
            except ResourceExistsError:
                pass
        for queue in (self.settings.queue_name, self.settings.poison_queue_name, self.settings.notify_queue_name):
            try:
                self.queue(queue).create_queue()
            except ResourceExistsError:
                pass
        for container in (self.ucd_container(), self.staging_container()):
            try:
                container.create_container()
            except ResourceExistsError:
                pass
        return self


def _setting(settings: Settings) -> str:
    """The app setting that names the app's storage: the connection string, or else the identity-based URIs."""
    return "AzureWebJobsStorage" if settings.storage_connection else "AzureWebJobsStorage__blobServiceUri"


def _managed_identity(client_id: str):
    """The app's user-assigned identity in Azure (AzureWebJobsStorage__clientId), else the default chain."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()


_shared: dict[Settings, Storage] = {}
_shared_lock = threading.Lock()


def storage_for(settings: Settings) -> Storage:
    """One Storage per settings per process, created (and its resources ensured) on first use."""
    with _shared_lock:
        storage = _shared.get(settings)
        if storage is None:
            storage = _ensured(Storage(settings))
            _shared[settings] = storage
        return storage


def _ensured(storage: Storage) -> Storage:
    """Storage.ensure(); refused credentials are a setting to fix, not an outage to wait out."""
    try:
        return storage.ensure()
    except HttpResponseError as error:
        if error.status_code not in (401, 403):
            raise
        raise ConfigurationError(
            f"is refused by the storage account (HTTP {error.status_code}): check its account key, SAS or identity",
            field=_setting(storage.settings),
        ) from None
