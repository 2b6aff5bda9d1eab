"""What a selection names that the account's catalog has not seen yet: a warning each, never a refusal
(an event may be sent for the first time after the integration is made). Pure: the catalog is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Integration

if TYPE_CHECKING:
    from ..ucd.catalog import Catalog


def unseen(integration: Integration, catalog: Catalog) -> list[str]:
    """One sentence per selected event, parameter or attribute the catalog lacks, naming its field."""
    seen_events: dict[str, list[str]] = catalog["events"]
    warnings = []
    for i, event in enumerate(integration.events):
        if event.name not in seen_events:
            warnings.append(
                f"events[{i}].name: event {event.name!r} has not been seen in this account yet; "
                "the files hold no rows of it until it is."
            )
        seen_params = set(seen_events.get(event.name, ()))
        warnings += [
            f"events[{i}].params[{j}]: parameter {param!r} has not been seen on event {event.name!r} "
            "in this account yet; its column stays empty until it is."
            for j, param in enumerate(event.params)
            if param not in seen_params
        ]
    seen_attributes = set(catalog["attributes"])
    warnings += [
        f"attributes[{k}]: attribute {key!r} has not been seen on a user of this account yet; "
        "its column stays empty until it is."
        for k, key in enumerate(integration.attributes)
        if key not in seen_attributes
    ]
    return warnings
