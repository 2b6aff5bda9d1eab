"""How a JSON value is written into a CSV cell; decided once, at ingest, so exports stay columnar."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TypeAlias

# A JSON value as a request carries it (attributes, identifiers, event parameters).
Json: TypeAlias = "str | int | float | bool | None | list[Json] | dict[str, Json]"


def render(value: Json) -> str | None:
    """null stays null (an empty cell); booleans true/false; numbers as JSON; nested values as compact JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


# What the catalog records of a parameter's values (the export's typed formats read it): every value an
# int64 integer, every value a finite number, or anything else (text, booleans, nested values, huge ints).
INTEGER = "integer"
NUMBER = "number"
STRING = "string"
INT64 = range(-(2**63), 2**63)


def value_kind(value: Json) -> str:
    """A JSON value's kind for the catalog: integer (fits int64), number, or string for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return STRING
    if isinstance(value, int):
        return INTEGER if value in INT64 else STRING  # exact: a double would round a huge integer
    return NUMBER  # finite: the request parser refuses NaN and infinities


def join_kinds(a: str | None, b: str | None) -> str | None:
    """The kind that holds the values of both (None: no value seen yet); only ever widens."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    return NUMBER if {a, b} == {INTEGER, NUMBER} else STRING


def event_id(account: str, user_id: str, event_name: str, timestamp_ms: int, params: Mapping[str, Json]) -> str:
    """The stored event's stable identity: a hash of (account, user, name, event time, parameters)."""
    canonical = json.dumps(
        [account, user_id, event_name, timestamp_ms, params],
        separators=(",", ":"),
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
