"""The user content database (UCD): stored events by entry time, profiles and the catalog."""

from .ingest import UpsertResult
from .request import UpsertRequest, parse_upsert
from .store import UcdStore

__all__ = ["UcdStore", "UpsertRequest", "UpsertResult", "parse_upsert"]
