"""Run history: one record per exported window (bounds, file, rows, bytes, duration, attempts, status)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .windows import Window


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
    selection: str = ""  # the events and attributes exported, as JSON: a replay uses them again

    @classmethod
    def of_window(cls, account: str, integration_id: str, window: Window, file: str, **fields: Any) -> RunRecord:
        """A new record of one window, its file named by the caller."""
        return cls(account, integration_id, window.start_unix, window.end_unix, file, **fields)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("account")
        data.pop("selection")
        data["error"] = self.error or None
        return data


def _partition(account: str, integration_id: str) -> str:
    return f"{account}~{integration_id}"


def _row(window_start: int) -> str:
    # Inverted so that a partition scan reads the newest windows first.
    return f"{10**12 - 1 - window_start:012d}"


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
        entity = {k: v for k, v in asdict(record).items()}
        entity.update(PartitionKey=_partition(record.account, record.integration_id), RowKey=_row(record.window_start))
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

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
    def _from_entity(entity: Any) -> RunRecord:
        fields = RunRecord.__dataclass_fields__
        record = RunRecord(**{k: entity[k] for k in fields if k in entity})
        record.status = RunStatus(record.status)
        return record
