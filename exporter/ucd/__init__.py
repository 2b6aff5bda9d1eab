"""The user content database (UCD): stored events by entry time, profiles and the catalog."""
from .request import UpsertRequest, parse_upsert
from .ingest import UpsertResult
from .store import UcdStore

__all__ = ["UcdStore", "UpsertRequest", "UpsertResult", "parse_upsert"]
