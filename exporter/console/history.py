"""The History section of an integration on the integrations page: who changed what, and when."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the dispatcher imports this module
    from .app import Visit

SHOWN = 10  # history entries shown per integration (the API and CLI page through more)


def entries(visit: Visit, integration_id: str) -> list[dict[str, Any]]:
    """The newest changes of one integration, in words: when, who, what, and each field's old and new value."""
    answer = visit.ctx.integrations.history(visit.account, integration_id, SHOWN)
    return [
        {
            "when": entry["at"][:16].replace("T", " "),
            "who": entry["who"],
            "what": entry["action"].capitalize()
            + (" (credentials verified)" if entry.get("credentials_verified") else ""),
            "changes": [_change(c) for c in entry["changes"]],
        }
        for entry in answer["history"]
    ]


def _change(change: Mapping[str, object]) -> str:
    if change.get("changed"):
        return f"{change['field']}: changed"
    if change["old"] is None:
        return f"{change['field']}: {_value(change['new'])}"
    return f"{change['field']}: {_value(change['old'])} → {_value(change['new'])}"


def _value(value: object) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))
