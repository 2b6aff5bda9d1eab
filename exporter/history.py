"""The history of an account: who changed an integration or the account's members, what, and when.

One entity per change in the history table, partitioned by account; the RowKey is the inverted
time, so a partition reads newest first and a page is the newest N.

Who: the signed-in user on whose behalf a request runs, `operator` for the function key and the
CLI, `system` for the service's own moves. The API and the console say who with `acting_as`; code
that does not (the CLI, a test) acts as the operator.

Every process may die between any two lines, and every request may be sent twice. A change is
therefore recorded *before* it is made, as intended, and confirmed after it landed: a change
that was made always has its entry. An intended entry never confirmed (the process died in
between, or the write lost a race) is resolved when read, by the subject's versions: each entry
holds a digest of the subject before and after; it happened if its `after` is the subject's
current version or the `before` of a newer entry that happened. A retried request that changes
nothing writes nothing (an entry is only intended for a difference); one that intended the same
change twice (died before making it, then retried) shows once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from azure.data.tables import TableEntity, UpdateMode

from .clock import Clock, iso, parse_instant
from .scoped import scoped
from .storage import HISTORY_TABLE, Storage, as_columns, from_columns

if TYPE_CHECKING:  # the ucd package is not loaded for a type
    from .ucd.values import Json

OPERATOR = "operator"  # the function key or the CLI
SYSTEM = "system"  # the service itself (the worker's credential stops)
ABSENT = "absent"  # the version of a subject that does not exist (before a create, after a delete)
INTEGRATION = "integration"
MEMBER = "member"
MAX_VALUE_CHARS = 2000  # a longer old or new value is shown as changed only (an entity property holds 64 KiB)
_NEWEST_FIRST = 10**17  # microseconds: the RowKey is this minus the time, zero-padded
_PER_INSTANT = 100_000  # entries of one instant ordered among themselves (the rest share the last place)
_AS_STORED = ("subject", "subject_id", "action", "who", "before", "after")  # columns that hold the field as it is

_actor: ContextVar[str] = ContextVar("history_actor", default=OPERATOR)


def acting_as(who: str) -> AbstractContextManager[None]:
    """Record the changes made inside as made by `who`."""
    return scoped(_actor, who)


def actor() -> str:
    return _actor.get()


@dataclass(frozen=True)
class Change:
    """One field: its old and new values, or only that it changed (a secret, or a value too long to keep)."""

    field: str
    old: Json = None
    new: Json = None
    secret: bool = False

    def to_json(self) -> dict[str, Json]:
        if self.secret:
            return {"field": self.field, "changed": True}
        return {"field": self.field, "old": self.old, "new": self.new}

    @classmethod
    def of(cls, field: str, old: Json, new: Json) -> Change:
        if len(json.dumps(old)) + len(json.dumps(new)) > MAX_VALUE_CHARS:
            return cls(field, secret=True)
        return cls(field, old, new)


@dataclass(frozen=True)
class Entry:
    account: str
    subject: str  # "integration" or "member"
    subject_id: str  # the integration id or the user
    action: str  # created, updated, paused, resumed, deleted, added, removed, stopped
    who: str
    at: datetime
    changes: tuple[Change, ...]
    before: str  # digests of the subject's versions (ABSENT when it does not exist)
    after: str
    verified: bool = False  # the destination's credentials were verified for this change
    confirmed: bool = False
    row_key: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Json]:
        body: dict[str, Json] = {
            "at": iso(self.at),
            "who": self.who,
            "action": self.action,
            "subject": self.subject,
            "id" if self.subject == INTEGRATION else "user": self.subject_id,
            "changes": [c.to_json() for c in self.changes],
        }
        if self.verified:
            body["credentials_verified"] = True
        return body

    def to_entity(self) -> dict[str, str | bool]:
        return {
            "PartitionKey": self.account,
            "RowKey": self.row_key,
            **as_columns(self, (*_AS_STORED, "verified", "confirmed")),
            "at": iso(self.at),
            "changes": json.dumps([[c.field, c.old, c.new, c.secret] for c in self.changes]),
        }

    @classmethod
    def from_entity(cls, entity: TableEntity) -> Entry:
        return cls(
            account=entity["PartitionKey"],
            **from_columns(entity, _AS_STORED),
            at=parse_instant(entity["at"], "stored"),
            changes=tuple(Change(f, o, n, s) for f, o, n, s in json.loads(entity["changes"])),
            verified=bool(entity.get("verified", False)),
            confirmed=bool(entity.get("confirmed", False)),
            row_key=entity["RowKey"],
        )


# The subject's current version, for entries read before they were confirmed: (subject, id) -> digest.
CurrentVersion = Callable[[str, str], str]


class HistoryRepo:
    def __init__(self, storage: Storage, clock: Clock):
        self.table = storage.table(HISTORY_TABLE)
        self.clock = clock

    def intend(
        self,
        account: str,
        subject: str,
        subject_id: str,
        action: str,
        changes: tuple[Change, ...],
        before: str,
        after: str,
        verified: bool = False,
        who: str | None = None,
    ) -> Entry:
        """Write the entry of a change about to be made (before it is made: see the module's docstring)."""
        now = self.clock.now()
        entry = Entry(
            account,
            subject,
            subject_id,
            action,
            who or actor(),
            now,
            changes,
            before,
            after,
            verified,
            row_key=self._row_key(account, now),
        )
        self.table.create_entity(entry.to_entity())
        return entry

    def _row_key(self, account: str, now: datetime) -> str:
        """Newest first: the inverted time, then a count down of the entries of the same instant.

        The count keeps an order between changes made at one instant (an injected clock, `--now`);
        two processes at the very same microsecond may take the same count, and then fall in either order.
        """
        micros = int(now.timestamp()) * 1_000_000 + now.microsecond
        instant = f"{_NEWEST_FIRST - micros:017d}"
        same = self.table.query_entities(
            "PartitionKey eq @pk and RowKey gt @lo and RowKey lt @hi",
            parameters={"pk": account, "lo": instant + "-", "hi": instant + "."},
            select=["RowKey"],
        )
        count = sum(1 for _ in same)
        return f"{instant}-{max(_PER_INSTANT - 1 - count, 0):05d}-{uuid.uuid4().hex[:8]}"

    def confirm(self, entry: Entry) -> None:
        """The change landed. Only a shortcut for readers: an unconfirmed entry is resolved when read."""
        self.table.upsert_entity(
            {"PartitionKey": entry.account, "RowKey": entry.row_key, "confirmed": True}, mode=UpdateMode.MERGE
        )

    def list(
        self, account: str, current: CurrentVersion, limit: int, subject: str | None = None, subject_id: str = ""
    ) -> list[Entry]:
        """The newest `limit` changes that happened, newest first (all subjects, or one)."""
        query, parameters = "PartitionKey eq @pk", {"pk": account}
        if subject is not None:
            query += " and subject eq @subject and subject_id eq @id"
            parameters.update(subject=subject, id=subject_id)
        pages = self.table.query_entities(query, parameters=parameters, results_per_page=min(limit, 1000))
        return _happened((Entry.from_entity(e) for e in pages), current, limit)


def _happened(entries: Iterator[Entry], current: CurrentVersion, limit: int) -> list[Entry]:
    """Entries (newest first) without the intended changes that were never made, and each change once."""
    newer: dict[tuple[str, str], Entry] = {}  # per subject: the newest entry kept so far (older than those before)
    versions: dict[tuple[str, str], str] = {}
    kept: list[Entry] = []
    for entry in entries:
        key = (entry.subject, entry.subject_id)
        later = newer.get(key)
        if later is not None and (later.before, later.after, later.action) == (
            entry.before,
            entry.after,
            entry.action,
        ):
            continue  # the same change intended twice (a retry after the first attempt died): it happened once
        if not entry.confirmed:
            if later is None and key not in versions:
                versions[key] = current(*key)
            reached = later.before if later is not None else versions[key]
            if entry.after != reached:
                continue  # intended, never made: the subject never had the version it would have made
        newer[key] = entry
        kept.append(entry)
        if len(kept) == limit:
            break
    return kept


def history_json(entries: list[Entry]) -> dict[str, Json]:
    return {"history": [e.to_json() for e in entries]}
