"""Run history: one record per exported window (bounds, file, rows, bytes, duration, attempts, status)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode

from .concurrency import retry_on_conflict
from .windows import Window

if TYPE_CHECKING:  # the ucd package is not loaded for a type
    from .ucd.values import Json


class RunStatus(StrEnum):
    """Where a window's export stands; the values are what the run table and the API hold."""

    EXPORTING = "exporting"  # recorded before the first byte: the window's bounds and selection are fixed from here on
    EXPORTED = "exported"
    RETRYING = "retrying"
    FAILED = "failed"
    POISONED = "poisoned"


@dataclass
class RunRecord:
    account: str
    integration_id: str
    window_start: int  # unix seconds
    window_end: int
    file: str
    status: RunStatus
    rows: int = 0
    bytes: int = 0
    duration_ms: int = 0
    attempts: int = 0
    error: str = ""
    updated_at: str = ""
    sha256: str = ""  # the committed file's SHA-256, hex (empty: not yet known: a split window's is read back after)
    selection: str = ""  # the events and attributes exported, as JSON: a replay uses them again
    note: str = (
        ""  # what befell the export short of a failure: the window's file started again from its first block, and why
    )

    @classmethod
    def of_window(
        cls,
        account: str,
        integration_id: str,
        window: Window,
        file: str,
        status: RunStatus,
        *,
        rows: int = 0,
        attempts: int = 0,
    ) -> RunRecord:
        """A new record of one window, its file named by the caller."""
        return cls(account, integration_id, window.start_unix, window.end_unix, file, status, rows, attempts=attempts)

    def to_json(self) -> dict[str, Json]:
        data: dict[str, Json] = asdict(self)
        data.pop("account")
        data.pop("selection")
        data["error"] = self.error or None
        data["note"] = self.note or None
        return data


def _partition(account: str, integration_id: str) -> str:
    return f"{account}~{integration_id}"


def _row(window_start: int) -> str:
    # Inverted so that a partition scan reads the newest windows first.
    return f"{10**12 - 1 - window_start:012d}"


IF_SAME = MatchConditions.IfNotModified


def _entity(record: RunRecord) -> dict[str, object]:
    entity: dict[str, object] = dict(asdict(record))
    entity.update(PartitionKey=_partition(record.account, record.integration_id), RowKey=_row(record.window_start))
    return entity


class RunRepo:
    def __init__(self, table: TableClient):
        self.table = table

    def get(self, account: str, integration_id: str, window_start: int) -> RunRecord | None:
        try:
            entity = self.table.get_entity(_partition(account, integration_id), _row(window_start))
        except ResourceNotFoundError:
            return None
        return self._from_entity(entity)

    def put(self, record: RunRecord) -> None:
        """Idempotent: a window has one record, rewritten by each attempt."""
        self.table.upsert_entity(_entity(record), mode=UpdateMode.REPLACE)

    def put_unless_exported(self, record: RunRecord) -> bool:
        """Write the record unless the window's stored record says exported; False if it does.

        Two workers can export one window at once (a duplicate delivery): the one that fails after the
        other delivered must not write its failure over the delivery. The write is ETag-conditional, so
        a delivery recorded between the read and the write is seen.
        """
        entity = _entity(record)
        keys = (_partition(record.account, record.integration_id), _row(record.window_start))

        def read(_stale: TableEntity | None = None) -> TableEntity | None:
            try:
                return self.table.get_entity(*keys)
            except ResourceNotFoundError:
                return None

        def attempt(current: TableEntity | None) -> bool:
            if current is None:
                self.table.create_entity(entity)
            elif current["status"] == RunStatus.EXPORTED:
                return False
            else:
                etag = current.metadata["etag"]
                self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=IF_SAME)
            return True

        return retry_on_conflict(
            read(),
            attempt,
            read,
            conflicts=(ResourceExistsError, ResourceModifiedError),
            what="the window's run record",
        )

    def record_sha256(self, record: RunRecord, sha256: str) -> RunRecord | None:
        """Write the file's SHA-256 on the window's record, read back after its export (a split window's).

        Only on the record as the digest found it (exported, the same file and bytes, no hash yet): a
        replay or another digest meanwhile keeps its own. Answers the record as stored.
        """
        keys = (_partition(record.account, record.integration_id), _row(record.window_start))
        try:
            entity = self.table.get_entity(*keys)
        except ResourceNotFoundError:
            return None
        stored = self._from_entity(entity)
        if stored.status != RunStatus.EXPORTED or (stored.file, stored.bytes) != (record.file, record.bytes):
            return stored
        if stored.sha256:
            return stored
        entity["sha256"] = sha256
        try:
            self.table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=entity.metadata["etag"], match_condition=IF_SAME
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return self.get(record.account, record.integration_id, record.window_start)
        stored.sha256 = sha256
        return stored

    def list(self, account: str, integration_id: str, limit: int = 1000) -> list[RunRecord]:
        """The newest `limit` records, newest first."""
        entities = self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": _partition(account, integration_id)}
        )
        records = []
        for entity in entities:
            records.append(self._from_entity(entity))
            if len(records) >= limit:
                break
        return records

    @staticmethod
    def _from_entity(entity: TableEntity) -> RunRecord:
        fields = RunRecord.__dataclass_fields__
        record = RunRecord(**{k: entity[k] for k in fields if k in entity})
        record.status = RunStatus(record.status)
        return record
