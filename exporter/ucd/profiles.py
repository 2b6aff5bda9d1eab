"""UCD profiles: merged attributes and identifiers, tombstones (the catalog is `catalog.py`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableEntity, TableErrorCode, TableTransactionError, UpdateMode

from ..clock import Clock, iso
from ..errors import InputError, NotFoundError
from ..storage import UCD_PROFILES_TABLE, Storage
from ..validation import check_account, check_name
from .request import MAX_PROFILE_CHARS, UserDraft
from .tables import TRANSACTION_SIZE, UNREAD, WORKERS, Unread, get_or_none, read_modify_write, table_key
from .values import Json, render

# Profile reads are single-entity GETs, mostly waiting on the network: more of them side by side.
READ_WORKERS = 32
EXISTING_CACHE_PROFILES = 50_000  # profiles this process remembers as stored (a few MB; then it starts afresh)
# A row no profile ever has: `table_key` gives percent-encoded names or `~` and 64 hex digits.
PROBE_ROW = "~probe"

# A user's attributes (JSON values, as sent) and a profile entity as written.
Attributes = dict[str, Json]
Entity = dict[str, object]
# A new profile: its user, its entity, its attributes.
Fresh = tuple[UserDraft, Entity, Attributes]
# The change that merges a user into a stored profile (None: no profile yet): (entity to write or None, attributes).
ProfileMerge = Callable[[TableEntity | None], tuple[Entity | None, Attributes]]


@dataclass
class _Plan:
    """What a merge writes: new profiles (with their entity and attributes), changed ones; the attributes of each user."""

    results: dict[str, Attributes] = field(default_factory=dict)
    created: list[Fresh] = field(default_factory=list)
    changed: list[UserDraft] = field(default_factory=list)


def _combine(users: list[UserDraft]) -> tuple[list[UserDraft], dict[str, str]]:
    """One draft per user id (a user sent twice merges in order), and where each first appears in the body."""
    merged: dict[str, UserDraft] = {}
    where: dict[str, str] = {}
    for i, user in enumerate(users):
        into = merged.setdefault(user.user_id, UserDraft(user.user_id))
        into.identifiers.update(user.identifiers)
        into.attributes.update(user.attributes)
        where.setdefault(user.user_id, f"users[{i}]")
    return list(merged.values()), where


class Profiles:
    """Profiles of every account: idempotent merges, each an ETag-guarded read-modify-write."""

    def __init__(self, storage: Storage, clock: Clock):
        self.clock = clock
        self.table = storage.table(UCD_PROFILES_TABLE)
        # Profiles this process has seen stored. A profile is never removed (a deletion tombstones it), so
        # this only ever goes stale towards "unknown": such a profile is probed or read, never assumed new.
        self._existing: set[tuple[str, str]] = set()
        self._existing_lock = threading.Lock()

    def merge(self, account: str, users: list[UserDraft]) -> dict[str, dict[str, str | None]]:
        """Merge each user's attributes into the profile; return the rendered attributes in force per user.

        Every merge is checked first, so a merge that would be too large refuses the request before any
        profile is written (bad input: docs/invariants.md). Profiles are read, except those of users not
        known here to be stored: up to a transaction of them is created at once (it lands only if all are
        new, and then none of them can refuse the request), more are probed (`_probe_new`, which writes
        nothing) and only those found stored are read. The writes then start from what was found.
        """
        drafts, where = _combine(users)
        with self._existing_lock:
            unknown = [u for u in drafts if (account, u.user_id) not in self._existing]
        at_once = unknown if len(unknown) <= TRANSACTION_SIZE else []
        absent = set() if at_once else self._probe_new(account, unknown)
        skip = absent | {u.user_id for u in at_once}
        currents = self._read(account, [u for u in drafts if u.user_id not in skip])
        currents.update(dict.fromkeys(absent))
        plan = _Plan()
        self._check(account, [u for u in drafts if u.user_id in currents], currents, where, plan)  # may refuse
        if at_once:
            fresh = [self._fresh(account, u, where[u.user_id]) for u in at_once]  # may refuse
            if self._create_at_once(account, fresh):
                plan.results.update({user.user_id: attributes for user, _entity, attributes in fresh})
            else:  # one of them is stored (or no answer): read them, check them, and write as the others
                found = self._read(account, at_once)
                self._check(account, at_once, found, where, plan)  # may refuse: nothing is written yet
                currents.update(found)
        with ThreadPoolExecutor(WORKERS) as pool:
            created = plan.created
            chunks = [created[i : i + TRANSACTION_SIZE] for i in range(0, len(created), TRANSACTION_SIZE)]
            for done in pool.map(lambda chunk: self._create_profiles(account, chunk, where), chunks):
                plan.results.update(done)
            # A changed profile is replaced one at a time: its If-Match is what keeps a concurrent merge
            # (Azurite ignores If-Match inside a transaction, so no conditional write goes into one).
            for user_id, attributes in pool.map(
                lambda u: (u.user_id, self._merge_profile(account, u, where[u.user_id], currents[u.user_id])),
                plan.changed,
            ):
                plan.results[user_id] = attributes
        return {user_id: {k: render(v) for k, v in attrs.items()} for user_id, attrs in plan.results.items()}

    def _read(self, account: str, drafts: list[UserDraft]) -> dict[str, TableEntity | None]:
        """The stored profile (or None) of each user, read side by side."""
        with ThreadPoolExecutor(READ_WORKERS) as readers:
            found = list(readers.map(lambda u: get_or_none(self.table, account, table_key(u.user_id)), drafts))
        self._remember(account, [u for u, current in zip(drafts, found) if current is not None])
        return {u.user_id: current for u, current in zip(drafts, found)}

    def _check(
        self,
        account: str,
        drafts: list[UserDraft],
        currents: dict[str, TableEntity | None],
        where: dict[str, str],
        plan: _Plan,
    ) -> None:
        """Merge each user onto what was found (raises if too large) and sort the outcome into `plan`."""
        for user in drafts:
            current = currents[user.user_id]
            entity, attributes = self._profile_merge(account, user, where[user.user_id])(current)
            if entity is None:
                plan.results[user.user_id] = attributes  # nothing new for this profile: no write
            elif current is None:
                plan.created.append((user, entity, attributes))
            else:
                plan.changed.append(user)

    def _fresh(self, account: str, user: UserDraft, where: str) -> Fresh:
        """A new profile of `user` (raises if it is too large): the user, its entity, its attributes."""
        entity, attributes = self._profile_merge(account, user, where)(None)
        assert entity is not None  # a new profile is always written
        return user, entity, attributes

    def _create_at_once(self, account: str, fresh: list[Fresh]) -> bool:
        """Create these profiles in one transaction, if none of them is stored; False if it did not land
        (or its answer was lost: then it is read, and a landed profile merges to itself)."""
        try:
            self.table.submit_transaction([("create", entity) for _user, entity, _attributes in fresh])
        except AzureError:
            return False
        self._remember(account, [user for user, _entity, _attributes in fresh])
        return True

    def _create_profiles(self, account: str, chunk: list[Fresh], where: dict[str, str]) -> dict[str, Attributes]:
        """Create new profiles in one transaction (one round trip for up to 100); return their attributes.

        A transaction is all or nothing. If it fails (a concurrent request created one of them, or
        storage failed or lost the answer, so it may have landed whole), each profile of the chunk is
        merged on its own from a fresh read: merges are idempotent, so a landed create merges to itself.
        """
        try:
            self.table.submit_transaction([("create", entity) for _user, entity, _attributes in chunk])
            self._remember(account, [user for user, _entity, _attributes in chunk])
            return {user.user_id: attributes for user, _entity, attributes in chunk}
        except AzureError:
            return {
                user.user_id: self._merge_profile(account, user, where[user.user_id])
                for user, _entity, _attributes in chunk
            }

    def _probe_new(self, account: str, drafts: list[UserDraft]) -> set[str]:
        """The users with no stored profile, found by transactions that write nothing (up to 99 users each).

        A probe is one transaction: a create of each user's (empty) profile, then the delete of a row that
        never exists. Storage runs a transaction's operations in order and fails it whole at the first that
        fails: at the delete if every user is new, at the first user who has a profile otherwise. So it
        never lands, and one round trip tells "all new" (then nothing is read) or where the first stored
        profile is (the users before it are new; the rest are read). Users this process has seen stored
        are not probed.
        """
        with self._existing_lock:
            candidates = [u for u in drafts if (account, u.user_id) not in self._existing]
        size = TRANSACTION_SIZE - 1
        chunks = [candidates[i : i + size] for i in range(0, len(candidates), size)]
        with ThreadPoolExecutor(WORKERS) as pool:
            found = list(pool.map(lambda chunk: self._probe_chunk(account, chunk), chunks))
        return {user_id for new in found for user_id in new}

    def _probe_chunk(self, account: str, chunk: list[UserDraft]) -> list[str]:
        ops: list[tuple[str, Entity]] = [
            ("create", {"PartitionKey": account, "RowKey": table_key(u.user_id), "user_id": u.user_id, "probe": True})
            for u in chunk
        ]
        ops.append(("delete", {"PartitionKey": account, "RowKey": PROBE_ROW}))
        try:
            self.table.submit_transaction(ops)
        except TableTransactionError as exc:
            code = getattr(exc, "error_code", None)
            if code == TableErrorCode.RESOURCE_NOT_FOUND and exc.index == len(chunk):
                return [u.user_id for u in chunk]
            if code == TableErrorCode.ENTITY_ALREADY_EXISTS and 0 <= exc.index < len(chunk):
                self._remember(account, [chunk[exc.index]])
                return [u.user_id for u in chunk[: exc.index]]
            return []
        except AzureError:
            return []  # no answer (the probe cannot have landed): the chunk is read
        # Only if someone wrote the reserved row: the probe landed, so these users now have empty
        # profiles; they are read and merged like any stored profile.
        return []

    def _remember(self, account: str, users: list[UserDraft]) -> None:
        """Note profiles seen stored (bounded: the set starts afresh when it is full)."""
        with self._existing_lock:
            if len(self._existing) + len(users) > EXISTING_CACHE_PROFILES:
                self._existing.clear()
            self._existing.update((account, u.user_id) for u in users)

    def _profile_merge(self, account: str, user: UserDraft, where: str) -> ProfileMerge:
        """The change that merges `user` into a stored profile (for `read_modify_write`)."""

        def merge(current: TableEntity | None) -> tuple[Entity | None, Attributes]:
            kept = None if current is None or current.get("deleted", False) else current  # a tombstone starts afresh
            fresh = kept is None
            attributes = {} if kept is None else json.loads(kept.get("attributes", "{}"))
            identifiers = {} if kept is None else json.loads(kept.get("identifiers", "{}"))
            new_attributes = {**attributes, **user.attributes}
            new_identifiers = {**identifiers, **user.identifiers}
            if not fresh and new_attributes == attributes and new_identifiers == identifiers:
                return None, attributes
            entity: Entity = {
                "PartitionKey": account,
                "RowKey": table_key(user.user_id),
                "user_id": user.user_id,
                "attributes": json.dumps(new_attributes, separators=(",", ":"), ensure_ascii=False),
                "identifiers": json.dumps(new_identifiers, separators=(",", ":"), ensure_ascii=False),
                "deleted": False,
                "updated_at": iso(self.clock.now()),
            }
            for part in ("attributes", "identifiers"):
                if len(str(entity[part])) > MAX_PROFILE_CHARS:
                    raise InputError(
                        f"merged with the stored profile it exceeds {MAX_PROFILE_CHARS} characters",
                        field=f"{where}.{part}",
                    )
            return entity, new_attributes

        return merge

    def _merge_profile(
        self, account: str, user: UserDraft, where: str, current: TableEntity | None | Unread = UNREAD
    ) -> Attributes:
        return read_modify_write(
            self.table,
            account,
            table_key(user.user_id),
            self._profile_merge(account, user, where),
            f"profile of user {user.user_id!r}",
            current=current,
        )

    def delete_user(self, account: str, user_id: str) -> dict[str, str | bool]:
        """Tombstone a profile; events already stored stay and are still exported."""
        check_account(account)
        check_name(user_id, "user_id")
        try:
            current = self.table.get_entity(account, table_key(user_id))
        except ResourceNotFoundError:
            raise NotFoundError(f"user {user_id!r} not found in account {account!r}", field="user_id") from None
        self.table.update_entity(
            {
                "PartitionKey": account,
                "RowKey": table_key(user_id),
                "deleted": True,
                "deleted_at": iso(self.clock.now()),
            },
            mode=UpdateMode.MERGE,
            etag=current.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
        return {"account": account, "user_id": user_id, "deleted": True}

    def profile(self, account: str, user_id: str) -> dict[str, Json] | None:
        """A user's stored profile (a tombstoned one too), or None."""
        try:
            entity = self.table.get_entity(account, table_key(user_id))
        except ResourceNotFoundError:
            return None
        return {
            "user_id": entity["user_id"],
            "attributes": json.loads(entity.get("attributes", "{}")),
            "identifiers": json.loads(entity.get("identifiers", "{}")),
            "deleted": entity.get("deleted", False),
        }
