"""Table Storage helpers shared by the UCD's parts: names as keys, a read that may find nothing, and
the ETag-guarded read-modify-write of one entity (profiles and catalog entries)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode

from ..concurrency import retry_on_conflict

WORKERS = 8  # Table round trips one request makes side by side
TRANSACTION_SIZE = 100  # entities per entity-group transaction (the Table service's limit)
MAX_KEY_CHARS = 400  # Table keys hold at most 1 KiB: 512 UTF-16 code units, with room to spare

# Another writer created or changed the entity since we read it: read again and redo the change.
CONFLICTS = (ResourceExistsError, ResourceModifiedError)

Result = TypeVar("Result")
# `change(current or None)` → (the entity to write, or None for no write; what the caller gets back).
Change = Callable[[TableEntity | None], tuple[dict[str, object] | None, Result]]


class Unread:
    """No read made yet: `read_modify_write` reads the entity itself."""


UNREAD = Unread()


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


def get_or_none(table: TableClient, partition: str, row: str) -> TableEntity | None:
    """The entity, or None if there is none."""
    try:
        return table.get_entity(partition, row)
    except ResourceNotFoundError:
        return None


def read_modify_write(
    table: TableClient,
    partition: str,
    row: str,
    change: Change[Result],
    what: str,
    current: TableEntity | None | Unread = UNREAD,
) -> Result:
    """Optimistic concurrency on one entity: `change(current or None)` gives (entity to write or None, result);
    a concurrent writer makes it read and change again. `current` may pass in a read already made."""

    def read(_stale: TableEntity | None = None) -> TableEntity | None:
        return get_or_none(table, partition, row)

    def attempt(current: TableEntity | None) -> Result:
        entity, result = change(current)
        if entity is not None:
            _write(table, entity, current)
        return result

    first = read() if isinstance(current, Unread) else current
    return retry_on_conflict(first, attempt, read, conflicts=CONFLICTS, what=what)


def _write(table: TableClient, entity: dict[str, object], current: TableEntity | None) -> None:
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
