"""Integrations in Table Storage, one partition per account; every write is conditional."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from ..errors import ConflictError, LimitError, NotFoundError, StaleRecordError, TransientError
from .due import DueIndex, Move, Snapshot, is_later
from .model import Integration

log = logging.getLogger(__name__)

MAX_DESTINATIONS_PER_ACCOUNT = 5
# IntegrationService.create makes ids of 12 lowercase hex digits; anything else names no integration,
# and some of it ('/', '#', '?', over 1 KiB) could not even be asked for as a Table key.
ID_RE = re.compile(r"[0-9a-f]{12}")


def _not_found(account: str, integration_id: str) -> NotFoundError:
    return NotFoundError(f"integration {integration_id!r} not found in account {account!r}", field="id")


def _slot_key(slot: int) -> str:
    return f"~slot-{slot}"


class IntegrationRepo:
    """Every write keeps the due index (exporter/integrations/due.py) in step, in the order it needs."""

    def __init__(self, table: TableClient, due: DueIndex):
        self.table = table
        self.due = due

    def get(self, account: str, integration_id: str) -> Integration:
        if not ID_RE.fullmatch(integration_id):
            raise _not_found(account, integration_id)  # the answer to an unknown id, without asking storage
        try:
            entity = self.table.get_entity(account, integration_id)
        except ResourceNotFoundError:
            raise _not_found(account, integration_id) from None
        if entity.get("kind") != "integration":
            raise _not_found(account, integration_id)
        return Integration.from_entity(entity)

    def list(self, account: str) -> list[Integration]:
        entities = self.table.query_entities(
            "PartitionKey eq @pk and kind eq 'integration'", parameters={"pk": account}
        )
        return sorted((Integration.from_entity(e) for e in entities), key=lambda i: (i.created_at, i.id))

    def all(self) -> Iterator[Integration]:
        """Every integration of every account: a full scan, for the hourly sweep only."""
        for entity in self.table.query_entities("kind eq 'integration'"):
            yield Integration.from_entity(entity)

    def create(self, integration: Integration) -> Integration:
        """Take a free destination slot and create the integration in one transaction.

        The slot entities make the per-account limit exact under concurrent creates: a transaction
        whose slot is taken fails whole, so no sixth integration and no orphaned slot can exist.
        """
        key = self.due.key_for(integration, 1)
        if key:  # the entry first: the integration is never stored due without one
            self.due.put(key, Snapshot.of(integration, None))
        integration = integration.with_changes(due_key=key, revision=1)
        try:
            stored = self._create(integration)
        except LimitError:
            self._after_write(Move(key, "", Snapshot.of(integration, None)))
            raise
        self._after_write(Move(key, key, Snapshot.of(stored, stored.etag)))
        return stored

    def _create(self, integration: Integration) -> Integration:
        slot = 0
        lost_answers = 0
        while slot < MAX_DESTINATIONS_PER_ACCOUNT:
            candidate = integration.with_changes(slot=slot)
            slot_entity = {
                "PartitionKey": integration.account,
                "RowKey": _slot_key(slot),
                "kind": "slot",
                "integration_id": integration.id,
            }
            try:
                self.table.submit_transaction([("create", slot_entity), ("create", candidate.to_entity())])
            except TableTransactionError:
                slot += 1
                continue
            except (ServiceRequestError, ServiceResponseError):
                # The outcome is unknown: the id is new, so if it exists now the transaction was ours.
                lost_answers += 1
                if self._find(integration.account, integration.id) is None:
                    if lost_answers >= 3:
                        raise TransientError("the integration could not be stored; retry") from None
                    continue  # it did not land: the same slot again
            return self.get(integration.account, integration.id)
        raise LimitError(
            f"account {integration.account!r} already has {MAX_DESTINATIONS_PER_ACCOUNT} destination integrations "
            "(Azure Blob, S3 and GCS together); delete one before adding another",
            field="account",
        )

    def _find(self, account: str, integration_id: str) -> Integration | None:
        try:
            return self.get(account, integration_id)
        except NotFoundError:
            return None

    def replace(self, integration: Integration, along: Sequence[dict[str, Any]] = ()) -> Integration:
        """Write the whole record if nobody changed it since it was read (ETag), and move its due entry.

        Due later (or no longer due): the record first, then the entry moves. Due earlier: the new
        entry first. Either way the index always holds an entry at or before the true due time.

        `along`: rows of the account's partition written in the same transaction, so they exist if and
        only if the change does (the notification outbox, exporter/notifications/outbox.py).
        """
        revision = integration.revision + 1
        old, new = integration.due_key, self.due.key_for(integration, revision)
        entry_first = bool(new) and not is_later(new, old)
        if entry_first:
            self.due.put(new, Snapshot.of(integration, None))
        candidate = integration.with_changes(due_key=new, revision=revision)
        try:
            written = self._update(candidate.to_entity(), integration.etag, along)
        except ResourceModifiedError:
            raise StaleRecordError(
                f"integration {integration.id!r} was changed concurrently; read it again and retry", field="id"
            ) from None
        except ResourceNotFoundError:
            raise _not_found(integration.account, integration.id) from None
        stored = candidate.with_changes(etag=written["etag"])
        self._after_write(Move(old, new, Snapshot.of(stored, stored.etag)))
        return stored

    def _update(self, entity: dict[str, Any], etag: str | None, along: Sequence[dict[str, Any]]) -> Mapping[str, Any]:
        if not along:
            return self.table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        condition = {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            answers = self.table.submit_transaction(
                [("update", entity, condition), *(("upsert", row, {"mode": UpdateMode.REPLACE}) for row in along)]
            )
        except TableTransactionError as error:  # the integration's condition failed: answered as a lone update's
            if error.status_code == 404:
                raise ResourceNotFoundError(error.message) from None
            if error.status_code == 412:
                raise ResourceModifiedError(error.message) from None
            raise
        return answers[0]

    def _after_write(self, move: Move) -> None:
        """The index catches up with a write that landed; if storage fails here the scheduler repairs it
        (the entry left behind is at or before the true due time), so the write's caller is not failed."""
        try:
            self.due.apply([move])
        except AzureError as error:
            log.warning("due index not updated after a write (repaired on the next tick): %s", type(error).__name__)

    def delete(self, integration: Integration) -> None:
        """Remove the integration and free its slot together."""
        try:
            self.table.submit_transaction(
                [
                    (
                        "delete",
                        integration.to_entity(),
                        {"etag": integration.etag, "match_condition": MatchConditions.IfNotModified},
                    ),
                    ("delete", {"PartitionKey": integration.account, "RowKey": _slot_key(integration.slot)}),
                ]
            )
        except TableTransactionError:
            raise ConflictError(
                f"integration {integration.id!r} was changed concurrently; read it again and retry", field="id"
            ) from None
        except (ServiceRequestError, ServiceResponseError):
            # The outcome is unknown: gone now means our delete landed and only its answer was lost.
            if self._find(integration.account, integration.id) is not None:
                raise TransientError(f"integration {integration.id!r} could not be deleted; retry") from None
        self._after_write(Move(integration.due_key, "", Snapshot.of(integration, None)))
