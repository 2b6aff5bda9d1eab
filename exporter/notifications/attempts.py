"""The last notification attempts of an integration, for the console: one row per integration holding the
newest few, so the integrations page reads one row per integration, however many were sent.

Best effort: two attempts recorded at the same moment may keep only one of them (the row is read, then
replaced), and a failure to record is logged, never raised: the log shows the attempts too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode

log = logging.getLogger(__name__)

KEEP = 5


@dataclass(frozen=True)
class Attempt:
    at: str  # ISO 8601 UTC
    event_id: str
    type: str
    outcome: str  # sent, retrying, gave up
    status: int | None  # the receiver's HTTP status; None: not reached

    @property
    def words(self) -> str:
        answered = f"HTTP {self.status}" if self.status is not None else "not reached"
        return f"{self.at} {self.type} ({self.event_id}): {self.outcome}, {answered}"


class AttemptLog:
    def __init__(self, table: TableClient):
        self.table = table

    def add(self, account: str, integration_id: str, attempt: Attempt) -> None:
        try:
            kept = [asdict(a) for a in self.last(account, integration_id)][: KEEP - 1]
            entity = {
                "PartitionKey": account,
                "RowKey": integration_id,
                "attempts": json.dumps([asdict(attempt), *kept]),
            }
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except Exception as error:  # noqa: BLE001 - the console's view; the send itself is logged
            log.warning("could not record a notification attempt (%s)", type(error).__name__)

    def last(self, account: str, integration_id: str) -> list[Attempt]:
        """The newest attempts first."""
        try:
            entity: TableEntity = self.table.get_entity(account, integration_id)
        except ResourceNotFoundError:
            return []
        return [Attempt(**item) for item in json.loads(entity["attempts"])]
