"""How a JSON value is written into a CSV cell; decided once, at ingest, so exports stay columnar."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def render(value: Any) -> str | None:
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


def event_id(account: str, user_id: str, event_name: str, timestamp_ms: int, params: dict[str, Any]) -> str:
    """The stored event's stable identity: a hash of (account, user, name, event time, parameters)."""
    canonical = json.dumps(
        [account, user_id, event_name, timestamp_ms, params],
        separators=(",", ":"),
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
