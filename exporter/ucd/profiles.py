"""UCD profiles (merged attributes and identifiers, tombstones) and the catalog of names and keys seen."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from ..clock import Clock, iso
from ..concurrency import retry_on_conflict
from ..errors import InputError, NotFoundError
from ..storage import UCD_CATALOG_TABLE, UCD_PROFILES_TABLE, Storage
from ..validation import check_account, check_name
from .request import MAX_PROFILE_CHARS, UserDraft
from .tables import WORKERS, get_or_none
from .values import STRING, join_kinds, render

MAX_KEY_CHARS = 400  # Table keys hold at most 1 KiB: 512 UTF-16 code units, with room to spare


def table_key(text: str) -> str:
    """A name as a Table key: ASCII percent-encoded (keys may not hold / \\ # ? or control characters),
    other characters as they are; a name whose key would be too long is keyed by its SHA-256.

    Percent-encoding every character (up to 12 bytes each in UTF-8) made valid names of 256 bytes
    too long for a key. The hash form starts with `~`, which the encoded form never holds.
    """
    key = "".join(quote(c, safe="").replace("~", "%7E") if c < "\x80" else c for c in text)
    if len(key) > MAX_KEY_CHARS:
        return "~" + hashlib.sha256(text.encode()).hexdigest()
    return key


class Profiles:
    """Profiles and catalog of every account: idempotent merges, each an ETag-guarded read-modify-write."""

    def __init__(self, storage: Storage, clock: Clock):
        self.clock = clock
        self.table = storage.table(UCD_PROFILES_TABLE)
        self.catalog_table = storage.table(UCD_CATALOG_TABLE)

    def merge(self, account: str, users: list[UserDraft]) -> dict[str, dict[str, str | None]]:
        """Merge each user's attributes into the profile; return the rendered attributes in force per user.

        All profiles are read and every merge is checked first, so a merge that would be too large
        refuses the request before any profile is written (bad input: docs/invariants.md); the writes then
        start from those reads.
        """
        merged: dict[str, UserDraft] = {}
        where: dict[str, str] = {}
        for i, user in enumerate(users):
            into = merged.setdefault(user.user_id, UserDraft(user.user_id))
            into.identifiers.update(user.identifiers)
            into.attributes.update(user.attributes)
            where.setdefault(user.user_id, f"users[{i}]")
        drafts = list(merged.values())
        with ThreadPoolExecutor(WORKERS) as pool:
            currents = list(pool.map(lambda u: get_or_none(self.table, account, table_key(u.user_id)), drafts))
            for user, current in zip(drafts, currents):
                self._profile_merge(account, user, where[user.user_id])(current)  # raises if too large
            results = list(
                pool.map(
                    lambda pair: (
                        pair[0].user_id,
                        self._merge_profile(account, pair[0], where[pair[0].user_id], pair[1]),
                    ),
                    zip(drafts, currents),
                )
            )
        return {user_id: {k: render(v) for k, v in attrs.items()} for user_id, attrs in results}

    def _profile_merge(self, account: str, user: UserDraft, where: str) -> Callable[[Any], tuple[dict | None, Any]]:
        """The change that merges `user` into a stored profile (for `_read_modify_write`)."""

        def merge(current):
            fresh = current is None or current.get("deleted", False)
            attributes = {} if fresh else json.loads(current.get("attributes", "{}"))
            identifiers = {} if fresh else json.loads(current.get("identifiers", "{}"))
            new_attributes = {**attributes, **user.attributes}
            new_identifiers = {**identifiers, **user.identifiers}
            if not fresh and new_attributes == attributes and new_identifiers == identifiers:
                return None, attributes
            entity = {
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

    def _merge_profile(self, account: str, user: UserDraft, where: str, current: Any) -> dict[str, Any]:
        return _read_modify_write(
            self.table,
            account,
            table_key(user.user_id),
            self._profile_merge(account, user, where),
            f"profile of user {user.user_id!r}",
            current=current,
        )

    def delete_user(self, account: str, user_id: str) -> dict[str, Any]:
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

    def profile(self, account: str, user_id: str) -> dict[str, Any] | None:
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

    def extend_catalog(self, account: str, users: list[UserDraft]) -> None:
        params: dict[str, set[str]] = defaultdict(set)
        kinds: dict[str, dict[str, str]] = defaultdict(dict)
        attribute_keys: set[str] = set()
        for user in users:
            attribute_keys.update(user.attributes)
            for e in user.events:
                params[e.event_name].update(e.params)
                seen = kinds[e.event_name]
                for key, kind in e.kinds.items():
                    seen[key] = join_kinds(seen.get(key), kind) or kind
        wanted: dict[str, tuple[str, set[str], dict[str, str] | None]] = {
            f"event~{table_key(name)}": (name, keys, kinds[name]) for name, keys in params.items()
        }
        wanted["attributes"] = ("", attribute_keys, None)
        for row_key, (name, keys, param_kinds) in wanted.items():
            self._extend_catalog_entry(account, row_key, name, keys, param_kinds)

    def _extend_catalog_entry(
        self, account: str, row_key: str, name: str, keys: set[str], kinds: dict[str, str] | None
    ) -> None:
        """Add keys (and, for an event, widen its parameters' kinds): the entry only ever grows."""

        def extend(current):
            known = set(json.loads(current["keys"])) if current else set()
            stored = _stored_kinds(current, known)
            merged = stored
            if kinds is not None:
                widened = {k: join_kinds(stored.get(k), kinds.get(k)) for k in known | keys}
                merged = {k: kind for k, kind in sorted(widened.items()) if kind is not None}
            if current is not None and keys <= known and merged == stored:
                return None, None
            entity = {
                "PartitionKey": account,
                "RowKey": row_key,
                "name": name,
                "keys": json.dumps(sorted(known | keys)),
            }
            if kinds is not None:
                entity["types"] = json.dumps(merged)
            return entity, None

        _read_modify_write(self.catalog_table, account, row_key, extend, "the catalog")

    def catalog(self, account: str) -> dict[str, Any]:
        """Event names with their parameter keys, the parameters' kinds, and attribute keys, seen for an account."""
        check_account(account)
        events: dict[str, list[str]] = {}
        kinds: dict[str, dict[str, str]] = {}
        attributes: list[str] = []
        for entity in self.catalog_table.query_entities("PartitionKey eq @pk", parameters={"pk": account}):
            if entity["RowKey"] == "attributes":
                attributes = json.loads(entity["keys"])
            else:
                events[entity["name"]] = json.loads(entity["keys"])
                kinds[entity["name"]] = _stored_kinds(entity, set(events[entity["name"]]))
        return {
            "account": account,
            "events": dict(sorted(events.items())),
            "param_types": dict(sorted(kinds.items())),
            "attributes": attributes,
        }


def _stored_kinds(entity: Any, known: set[str]) -> dict[str, str]:
    """An event entry's parameter kinds; an entry written before kinds were kept may hold anything: string.

    A key seen only with null values has no kind yet.
    """
    if entity is None:
        return {}
    if "types" not in entity:
        return {key: STRING for key in sorted(known)}
    return json.loads(entity["types"])


_UNREAD = object()
# Another writer created or changed the entity since we read it: read again and redo the change.
CONFLICTS = (ResourceExistsError, ResourceModifiedError)


def _read_modify_write(
    table, partition: str, row: str, change: Callable[[Any], tuple[dict | None, Any]], what: str, current: Any = _UNREAD
) -> Any:
    """Optimistic concurrency on one entity: `change(current or None)` gives (entity to write or None, result);
    a concurrent writer makes it read and change again. `current` may pass in a read already made."""

    def read(_stale: Any = None) -> Any:
        return get_or_none(table, partition, row)

    def attempt(current: Any) -> Any:
        entity, result = change(current)
        if entity is not None:
            _write(table, entity, current)
        return result

    return retry_on_conflict(read() if current is _UNREAD else current, attempt, read, conflicts=CONFLICTS, what=what)


def _write(table, entity: dict[str, Any], current: Any) -> None:
    """Create the entity, or replace `current` only if nobody changed it since it was read."""
    if current is None:
        table.create_entity(entity)
    else:
        table.update_entity(
            entity,
            mode=UpdateMode.REPLACE,
            etag=current.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
