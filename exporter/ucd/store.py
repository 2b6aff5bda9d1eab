"""The UCD store: one entrance to its three parts, on the app's storage account.

`ingest.py` stores events exactly once (the upsert protocol, with `intents.py`, `claims.py` and
`owners.py`), `profiles.py` keeps profiles, `catalog.py` the catalog, `reader.py` streams a window's
events. They share one client of the segments' container.
How they fit the app: docs/architecture.md; what they guarantee: docs/invariants.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..clock import Clock
from ..storage import Storage
from .catalog import Catalog, Catalogs
from .ingest import Ingest, UpsertResult, no_fault
from .profiles import Profiles
from .reader import WindowReader
from .request import UpsertRequest
from .values import Json


class UcdStore:
    """Stored events, profiles and catalog of every account."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        commit_timeout_seconds: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fault: Callable[[str], None] = no_fault,
    ):
        self.storage = storage
        self.clock = clock
        # One client for writes and reads, so a test that wraps its calls sees both.
        self.container = storage.ucd_container()
        self.profiles = Profiles(storage, clock)
        self.catalogs = Catalogs(storage)
        self.ingest = Ingest(
            storage,
            clock,
            self.profiles,
            self.catalogs,
            self.container,
            commit_timeout_seconds=commit_timeout_seconds,
            sleep=sleep,
            fault=fault,
        )
        self.reader = WindowReader(self.container)
        # Reading is the reader's own: one signature and docstring each (`WindowReader`), not a copy here.
        self.segments = self.reader.segments
        self.read_window = self.reader.read_window
        self.read_from = self.reader.read_from

    def upsert(self, request: UpsertRequest) -> UpsertResult:
        """Store the request's events once each; profiles merged, catalog extended."""
        return self.ingest.upsert(request)

    def delete_user(self, account: str, user_id: str) -> dict[str, str | bool]:
        """Tombstone a profile; events already stored stay and are still exported."""
        return self.profiles.delete_user(account, user_id)

    def profile(self, account: str, user_id: str) -> dict[str, Json] | None:
        """A user's stored profile (a tombstoned one too), or None."""
        return self.profiles.profile(account, user_id)

    def catalog(self, account: str) -> Catalog:
        """Event names with their parameter keys, and attribute keys, seen for an account."""
        return self.catalogs.read(account)
