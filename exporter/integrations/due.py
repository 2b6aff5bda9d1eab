"""The due index: where the scheduler finds the integrations that need it, by due time.

One entry per active integration, at the time the scheduler must next look at it: when its next
window is due (its end plus settle), or when the lease of a queued job runs out. The scheduler reads
only the entries at or before now (one range query), so its work grows with what is due, not with
the number of integrations. docs/fleet.md explains the protocol; in short:

- An entry's key is `{due}|{account}|{id}|{revision}`. Every write of an integration bumps its
  revision and stores the key of its current entry (`Integration.due_key`), so a key names one state
  of one integration: deleting an old key can never remove a newer state's entry.
- A write that makes an integration due *later* writes the integration first and then moves the
  entry; one that makes it due *earlier* (or due at all) writes the new entry first. Between the two
  writes the index holds an entry at or before the true due time, so a crash anywhere can delay an
  integration by at most a tick's repair, never lose it.
- An entry whose key is not its integration's `due_key` is stale: the scheduler (and the hourly
  sweep) writes the integration's true entry and deletes the stale one.

All entries live in one partition so that moves are atomic transactions and a tick is one range
query; docs/fleet.md says when to shard it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode

from ..clock import iso, parse_instant
from ..errors import InputError
from .model import Integration, Status

PARTITION = "due"
SWEEP_PARTITION, SWEEP_ROW = "sweep", "last"  # when the last sweep finished (jobs/sweep.py)
MAX_BATCH = 100  # operations in one entity group transaction (Table Storage's limit)


def due_at(integration: Integration, settle_seconds: int) -> datetime | None:
    """When the scheduler must next look at the integration; None while it has nothing to deliver."""
    if integration.status != Status.ACTIVE or integration.activated_at is None:
        return None
    start = integration.last_success_end or integration.activated_at
    due = start + timedelta(hours=integration.frequency_hours, seconds=settle_seconds)
    if integration.queued_until is not None and integration.queued_until > due:
        return integration.queued_until  # queued: looked at again only if the lease runs out
    return due


def entry_key(due: datetime, account: str, integration_id: str, revision: int) -> str:
    return f"{iso(due)}|{account}|{integration_id}|{revision:012d}"


def key_for(integration: Integration, revision: int, settle_seconds: int) -> str:
    """The index key of the integration's state at `revision`, or "" when it needs no entry."""
    due = due_at(integration, settle_seconds)
    return entry_key(due, integration.account, integration.id, revision) if due else ""


def due_time_of(key: str) -> datetime:
    return parse_instant(key.split("|", 1)[0], "due")


def is_later(new_key: str, old_key: str) -> bool:
    """Whether moving from old_key to new_key makes the integration due later (no key: never due)."""
    if not old_key:
        return False
    if not new_key:
        return True
    return due_time_of(new_key) >= due_time_of(old_key)


@dataclass(frozen=True)
class Snapshot:
    """What an entry keeps of its integration's state: enough to count its windows and take its lease."""

    activated_at: datetime | None
    last_success_end: datetime | None
    frequency_hours: int
    etag: str | None  # None: not confirmed yet, the scheduler reads the integration

    @classmethod
    def of(cls, integration: Integration, etag: str | None) -> Snapshot:
        return cls(integration.activated_at, integration.last_success_end, integration.frequency_hours, etag)

    def entity(self, key: str) -> dict:
        return {
            "PartitionKey": PARTITION,
            "RowKey": key,
            "etag": self.etag or "",
            "activated_at": iso(self.activated_at) if self.activated_at else "",
            "last_success_end": iso(self.last_success_end) if self.last_success_end else "",
            "frequency_hours": self.frequency_hours,
        }


UNCONFIRMED = Snapshot(None, None, 0, None)


# What DueEntry.from_entity reads of an entity, and so all a tick's query asks for.
TICK_COLUMNS = ("RowKey", "etag", "activated_at", "last_success_end", "frequency_hours", "leased_until")


@dataclass(frozen=True)
class DueEntry:
    """One entry as the scheduler reads it: enough to take the lease without reading the integration."""

    key: str
    account: str
    integration_id: str
    entry_etag: str  # the entry's own ETag: a stale entry is deleted only as it was read
    state: Snapshot
    leased_until: datetime | None = None  # queued by the scheduler until then (the lease lives here)

    @property
    def due(self) -> datetime:
        return due_time_of(self.key)

    @property
    def revision(self) -> int:
        return int(self.key.rsplit("|", 1)[1])

    @classmethod
    def from_entity(cls, entity: TableEntity) -> DueEntry | None:
        """The entry; None when its key is not one we could have written (the caller drops it)."""
        key = entity.get("RowKey", "")
        parts = key.split("|")
        try:
            if len(parts) != 4 or not parts[3].isdigit():
                raise ValueError(key)
            due_time_of(key)
        except (ValueError, InputError):
            return None
        try:
            state = Snapshot(
                activated_at=_instant(entity.get("activated_at")),
                last_success_end=_instant(entity.get("last_success_end")),
                frequency_hours=int(entity.get("frequency_hours", 0)),
                etag=entity.get("etag") or None,
            )
        except (ValueError, TypeError, InputError):
            state = UNCONFIRMED  # a damaged copy of the state: the scheduler reads the integration instead
        try:
            leased_until = _instant(entity.get("leased_until"))
        except InputError:
            leased_until, state = None, UNCONFIRMED
        return cls(key, parts[1], parts[2], entity.metadata.get("etag") or "", state, leased_until)


def _instant(text: str | None) -> datetime | None:
    return parse_instant(text, "due") if text else None


@dataclass(frozen=True)
class Move:
    """Replace the entry at `old` (if any) by one at `new` (if any) describing `state`."""

    old: str
    new: str
    state: Snapshot


def _lease_operation(entry: DueEntry, until: datetime, token: str) -> tuple[str, dict, dict]:
    entity = {"PartitionKey": PARTITION, "RowKey": entry.key, "leased_until": iso(until), "lease_token": token}
    return (
        "update",
        entity,
        {"mode": UpdateMode.MERGE, "etag": entry.entry_etag, "match_condition": MatchConditions.IfNotModified},
    )


# How a tick runs its lease transactions: (work, chunks) -> each chunk's result, in order (jobs/scheduler.py
# passes its bounded concurrent map).
RunChunks = Callable[[Callable[[list[DueEntry]], list[DueEntry]], list[list[DueEntry]]], list[list[DueEntry]]]


class DueIndex:
    def __init__(self, table: TableClient, settle_seconds: int):
        self.table = table
        self.settle_seconds = settle_seconds

    def key_for(self, integration: Integration, revision: int) -> str:
        return key_for(integration, revision, self.settle_seconds)

    def due_by(self, now: datetime) -> tuple[list[DueEntry], list[TableEntity]]:
        """Every entry due at or before `now`, oldest first, and the entities that are not entries.

        Only the columns a tick reads come back (`TICK_COLUMNS`): fewer bytes to send and to parse.
        No lower bound: every entry before now is due or under a lease (an integration resumed after
        months is due since then), so none may be skipped.
        """
        bound = iso(now) + "|~"  # '~' sorts after every account name character
        entries: list[DueEntry] = []
        broken: list[TableEntity] = []
        for entity in self.table.query_entities(
            "PartitionKey eq @pk and RowKey le @bound",
            parameters={"pk": PARTITION, "bound": bound},
            select=list(TICK_COLUMNS),
        ):
            entry = DueEntry.from_entity(entity)
            if entry is None:
                broken.append(entity)
            else:
                entries.append(entry)
        return entries, broken

    def all(self) -> Iterator[DueEntry | TableEntity]:
        """Every entry (the sweep), or the raw entity where it is not one."""
        for entity in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION}):
            yield DueEntry.from_entity(entity) or entity

    def last_sweep(self) -> datetime | None:
        """When the last sweep finished (its own row, outside the entries' partition), if one did."""
        try:
            return _instant(self.table.get_entity(SWEEP_PARTITION, SWEEP_ROW).get("finished_at"))
        except (ResourceNotFoundError, InputError):  # none yet, or not a time: a sweep is due either way
            return None

    def swept(self, at: datetime) -> None:
        self.table.upsert_entity({"PartitionKey": SWEEP_PARTITION, "RowKey": SWEEP_ROW, "finished_at": iso(at)})

    def put(self, key: str, state: Snapshot) -> None:
        """Write the entry at `key` (upsert: idempotent)."""
        self.table.upsert_entity(state.entity(key), mode=UpdateMode.REPLACE)

    def remove(self, key: str, entry_etag: str | None = None) -> None:
        """Delete an entry if it is there (only as it was read, when its ETag is given)."""
        try:
            if entry_etag:
                self.table.delete_entity(PARTITION, key, etag=entry_etag, match_condition=MatchConditions.IfNotModified)
            else:
                self.table.delete_entity(PARTITION, key)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as error:
            if error.status_code != 412:  # changed since read: not ours to delete
                raise

    def lease(
        self,
        entries: list[DueEntry],
        until: datetime,
        each: RunChunks | None = None,
    ) -> list[DueEntry]:
        """Mark the entries queued until `until`, each only as it was read; the ones that were marked.

        100 to a transaction; `each(work, chunks)` runs the transactions (the scheduler's bounded
        concurrent map: the SDK's batch encoding is client CPU and the service's work is server time,
        so overlapped a big tick takes the larger of the two, not their sum; default one by one). A transaction that fails (an entry moved or leased meanwhile) is
        retried entry by entry, so one changed entry costs the others nothing.
        """
        # Unique to this tick: an entry found changed that carries it was leased by this tick (the
        # answer of its transaction was lost), not by another.
        token = uuid.uuid4().hex
        chunks = [entries[first : first + MAX_BATCH] for first in range(0, len(entries), MAX_BATCH)]

        def lease_chunk(chunk: list[DueEntry]) -> list[DueEntry]:
            try:
                self.table.submit_transaction([_lease_operation(e, until, token) for e in chunk])
                return chunk
            except (TableTransactionError, ServiceRequestError, ServiceResponseError):
                return [e for e in chunk if self._lease_one(e, until, token)]

        results = each(lease_chunk, chunks) if each else [lease_chunk(chunk) for chunk in chunks]
        return [entry for chunk in results for entry in chunk]

    def _lease_one(self, entry: DueEntry, until: datetime, token: str) -> bool:
        _, entity, options = _lease_operation(entry, until, token)
        try:
            self.table.update_entity(entity, **options)
            return True
        except ResourceNotFoundError:
            return False
        except HttpResponseError as error:
            if error.status_code != 412:
                raise
        try:
            return self.table.get_entity(PARTITION, entry.key).get("lease_token") == token
        except ResourceNotFoundError:
            return False

    def apply(self, moves: Iterable[Move]) -> None:
        """Apply moves in transactions of up to MAX_BATCH operations; one whose batch fails goes alone."""
        batch: list[Move] = []
        size = 0
        for move in moves:
            ops = (1 if move.old else 0) + (1 if move.new else 0)
            if size + ops > MAX_BATCH:
                self._apply_batch(batch)
                batch, size = [], 0
            batch.append(move)
            size += ops
        self._apply_batch(batch)

    def _apply_batch(self, moves: list[Move]) -> None:
        if not moves:
            return
        operations: list = []
        for move in moves:
            if move.new:
                operations.append(("upsert", move.state.entity(move.new)))
            if move.old and move.old != move.new:
                operations.append(("delete", {"PartitionKey": PARTITION, "RowKey": move.old}))
        try:
            if operations:
                self.table.submit_transaction(operations)
        except TableTransactionError:
            for move in moves:  # an old entry already gone fails the whole batch: do each alone
                self.move(move)

    def move(self, move: Move) -> None:
        """The new entry first, then the old one removed: never a moment with neither."""
        if move.new:
            self.put(move.new, move.state)
        if move.old and move.old != move.new:
            self.remove(move.old)
