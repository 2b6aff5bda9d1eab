"""The user content database (UCD): stored events by entry time, profiles and the catalog."""
from .request import UpsertRequest, parse_upsert
from .store import UcdStore, UpsertResult

__all__ = ["UcdStore", "UpsertRequest", "UpsertResult", "parse_upsert"]
