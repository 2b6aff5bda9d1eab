"""Table Storage helpers shared by the UCD's parts."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

WORKERS = 8  # Table round trips one request makes side by side
TRANSACTION_SIZE = 100  # entities per entity-group transaction (the Table service's limit)


def get_or_none(table: TableClient, partition: str, row: str) -> Any:
    """The entity, or None if there is none."""
    try:
        return table.get_entity(partition, row)
    except ResourceNotFoundError:
        return None
