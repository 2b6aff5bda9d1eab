"""The UCD catalog: each account's event names with their parameter keys and kinds, and attribute keys.

An entry only ever grows (keys added, kinds widened: `values.join_kinds`), each an ETag-guarded
read-modify-write. Because it only grows, this process remembers what it has seen each account's
catalog hold, and a request whose names and keys are all known here has nothing to add: no read.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import TypedDict

from azure.data.tables import TableEntity

from ..storage import UCD_CATALOG_TABLE, Storage
from ..validation import check_account
from .request import UserDraft
from .tables import read_modify_write, table_key
from .values import STRING, join_kinds

CATALOG_CACHE_ACCOUNTS = 10_000  # accounts whose catalog this process remembers (then it starts afresh)

# What a request brings to the catalog, as this process remembers it: per entry (("attributes", ""),
# ("event", name), ("kind", name)) its keys; a kind entry's keys are "key\x00kind" pairs.
Facts = dict[tuple[str, str], set[str]]


class Catalog(TypedDict):
    """What an account has sent: event names with their parameter keys and kinds, and attribute keys."""

    account: str
    events: dict[str, list[str]]  # event name -> its parameter keys
    param_types: dict[str, dict[str, str]]  # event name -> parameter key -> its kind (integer, number, string)
    attributes: list[str]


class Catalogs:
    """The catalog of every account."""

    def __init__(self, storage: Storage):
        self.table = storage.table(UCD_CATALOG_TABLE)
        self._seen: dict[str, dict[tuple[str, str], frozenset[str]]] = {}
        self._lock = threading.Lock()

    def extend(self, account: str, users: list[UserDraft]) -> None:
        """Extend the catalog (`write`), unless this process has seen it hold already every event name,
        parameter key (with its kind) and attribute key of these users."""
        facts = _facts(users)
        with self._lock:
            seen = self._seen.get(account, {})
            if all(entry in seen and keys <= seen[entry] for entry, keys in facts.items()):
                return
        self.write(account, users)
        with self._lock:
            if account not in self._seen and len(self._seen) >= CATALOG_CACHE_ACCOUNTS:
                self._seen.clear()
            seen = self._seen.setdefault(account, {})
            for entry, keys in facts.items():
                seen[entry] = seen.get(entry, frozenset()) | keys

    def write(self, account: str, users: list[UserDraft]) -> None:
        """Add the users' event names, parameter keys (widening their kinds) and attribute keys."""
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
            self._extend_entry(account, row_key, name, keys, param_kinds)

    def _extend_entry(
        self, account: str, row_key: str, name: str, keys: set[str], kinds: dict[str, str] | None
    ) -> None:
        """Add keys (and, for an event, widen its parameters' kinds): the entry only ever grows."""

        def extend(current: TableEntity | None) -> tuple[dict[str, object] | None, None]:
            known = set(json.loads(current["keys"])) if current else set()
            stored = _stored_kinds(current, known)
            merged = stored
            if kinds is not None:
                widened = {k: join_kinds(stored.get(k), kinds.get(k)) for k in known | keys}
                merged = {k: kind for k, kind in sorted(widened.items()) if kind is not None}
            if current is not None and keys <= known and merged == stored:
                return None, None
            entity: dict[str, object] = {
                "PartitionKey": account,
                "RowKey": row_key,
                "name": name,
                "keys": json.dumps(sorted(known | keys)),
            }
            if kinds is not None:
                entity["types"] = json.dumps(merged)
            return entity, None

        read_modify_write(self.table, account, row_key, extend, "the catalog")

    def read(self, account: str) -> Catalog:  # the API's JSON answer
        """Event names with their parameter keys, the parameters' kinds, and attribute keys, seen for an account."""
        check_account(account)
        events: dict[str, list[str]] = {}
        kinds: dict[str, dict[str, str]] = {}
        attributes: list[str] = []
        for entity in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": account}):
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


def _facts(users: list[UserDraft]) -> Facts:
    """What these users bring to the catalog, in the form this process remembers it."""
    facts: Facts = defaultdict(set)
    facts[("attributes", "")] = set()  # written even when empty
    for user in users:
        facts[("attributes", "")].update(user.attributes)
        for e in user.events:
            facts[("event", e.event_name)].update(e.params)
            # A parameter's kind may widen the entry too (integer → number → string): known pairs only.
            facts[("kind", e.event_name)].update(f"{key}\x00{kind}" for key, kind in e.kinds.items())
    return facts


def _stored_kinds(entity: TableEntity | None, known: set[str]) -> dict[str, str]:
    """An event entry's parameter kinds; an entry written before kinds were kept may hold anything: string.

    A key seen only with null values has no kind yet.
    """
    if entity is None:
        return {}
    if "types" not in entity:
        return {key: STRING for key in sorted(known)}
    return json.loads(entity["types"])
