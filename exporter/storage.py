"""The app's own storage account (AzureWebJobsStorage): clients built once and shared."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableEntity, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

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
# Connections kept open per service (one pool per host and port): at least what the threads sharing its
# client use at once, else urllib3 throws the extra ones away ("Connection pool is full, discarding
# connection") and opens new ones on the next burst. The host runs up to 4 queue messages (host.json
# batchSize) and any number of HTTP requests at once in one process. An idle connection is one socket.
# Tables: an upsert reads profiles 32 at a time (ucd/profiles.py READ_WORKERS) besides its 8-thread
# claims and writes (ucd/tables.py WORKERS); two upserts at once fit.
TABLE_CONNECTIONS = 80
# Blobs: a window read downloads 3 segments with 2 connections each and lists 4 hours at once (ucd/reader.py),
# the worker lists on 8 threads, a split part stages 4 blocks at once; four jobs at once fit.
BLOB_CONNECTIONS = 64
QUEUE_CONNECTIONS = 16  # a message sent or deleted per job or part, a few at once
# What the blob and queue SDKs give the transport they build (their _shared/constants.py), and not one passed
# in: without it a download is read 4 KiB at a time (azure-core's default), twice the CPU, with 300 s timeouts.
STORAGE_SDK_TRANSPORT = {"connection_timeout": 20, "read_timeout": 60, "connection_data_block_size": 256 * 1024}

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
    _transports: list[RequestsTransport] = field(default_factory=list)

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
        blobs = pooled_transport(BLOB_CONNECTIONS, **STORAGE_SDK_TRANSPORT)
        tables = pooled_transport(TABLE_CONNECTIONS)  # the tables SDK builds azure-core's default transport
        queues = pooled_transport(QUEUE_CONNECTIONS, **STORAGE_SDK_TRANSPORT)  # shared by the queues' clients
        self._transports = [blobs, tables, queues]
        if settings.storage_connection:
            conn = settings.storage_connection
            self.blobs = BlobServiceClient.from_connection_string(conn, transport=blobs)
            self.table_service = TableServiceClient.from_connection_string(conn, transport=tables)
            self._queue_client = lambda name, **kw: QueueClient.from_connection_string(
                conn, name, transport=queues, **kw
            )
        else:
            credential = _managed_identity(settings.storage_client_id)
            self.blobs = BlobServiceClient(settings.storage_blob_uri, credential=credential, transport=blobs)
            self.table_service = TableServiceClient(settings.storage_table_uri, credential=credential, transport=tables)
            self._queue_client = lambda name, **kw: QueueClient(
                settings.storage_queue_uri, name, credential=credential, transport=queues, **kw
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

    def close(self) -> None:
        """Close the pooled connections (the transports do not own their sessions, so closing a client would not).
        The host keeps one Storage for its life; a test suite that makes one per test closes each at its end,
        or every idle connection stays an open socket on both sides."""
        for transport in self._transports:
            if transport.session is not None:
                transport.session.close()

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


def as_columns(record: object, names: Iterable[str]) -> dict[str, Any]:
    """`record`'s fields `names` as entity columns of the same names, for the fields stored as they are."""
    return {name: getattr(record, name) for name in names}


def from_columns(entity: TableEntity, names: Iterable[str]) -> dict[str, Any]:
    """The reverse of `as_columns`: those columns of a read entity, as keyword arguments of the record."""
    return {name: entity[name] for name in names}


def pooled_transport(connections: int, **options: int) -> RequestsTransport:
    """azure-core's requests transport with a pool of `connections` per host (requests keeps 10).

    Built as azure-core builds its own session (no urllib3 retries: the SDK's retry policy retries), with
    the pool sized; the transport does not own the session, so closing a client never swaps in a
    default-sized one. `options`: the transport's timeouts and read block size (azure-core's names).
    """
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=4,  # hosts (blob, queue and table endpoints differ) whose pools are kept
        pool_maxsize=connections,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=False, **options)


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


def adopt_storage(storage: Storage) -> None:
    """Share `storage` as its settings' Storage from now on, as if `storage_for` had made and ensured it. Tests
    give one whose tables, queues and containers are created on first use (tests/storage_kit.py)."""
    with _shared_lock:
        _shared[storage.settings] = storage


def forget_storage(settings: Settings) -> Storage | None:
    """Drop the shared Storage of `settings` (a test's own names, at the test's end); the caller closes it."""
    with _shared_lock:
        return _shared.pop(settings, None)


def shared_settings() -> set[Settings]:
    """The settings whose Storage is shared now (tests note them before a test to forget the new ones after it)."""
    with _shared_lock:
        return set(_shared)


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
