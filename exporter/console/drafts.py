"""A wizard in progress: what the user gave in the steps so far, kept server-side between pages.

The secret fields are sealed (Fernet, exporter/secrets.py) like an integration's, so a draft holds no
secret in clear and the browser never gets one back. A draft belongs to one user and one account.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from ..clock import Clock, iso, parse_instant
from ..storage import DRAFTS_TABLE, Storage

DRAFT_LIFETIME = timedelta(days=1)
STEPS = ("authentication", "configure", "launch")


@dataclass
class Draft:
    account: str
    id: str
    user: str
    type: str
    created_at: str
    integration_id: str = ""  # editing this integration; empty: a new one
    etag: str = ""  # the integration's version the edit started from
    container: str = ""
    prefix: str = ""
    auth: str = ""  # how it authenticates: "keyless" or "key" (fields.py); empty (a draft from before): a key
    public: dict[str, str] = field(default_factory=dict)  # credential fields that are not secret (region, endpoint)
    sealed: str = ""  # the secret fields given, as sealed JSON; empty: none given (an edit keeps the stored ones)
    given: list[str] = field(default_factory=list)  # the names of the secret fields in `sealed` (never their values)
    masked: dict[str, str] = field(default_factory=dict)  # what the secret fields look like masked (edits)
    destination_changed: bool = True  # a new integration's destination is always "changed"
    verified: bool = False
    steps_done: int = 0  # how many steps were saved
    events: list[dict[str, Any]] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    name: str = ""
    frequency_hours: int = 1
    status: str = "active"
    format: str = "csv"  # one of the API's formats (exporter/console/fields.py, FILE_FORMATS)
    notify_url: str = ""  # where notifications go (exporter/notifications); empty: none
    original: dict[str, Any] = field(
        default_factory=dict
    )  # an edit's starting point: where files went, how, the status
    message: str = ""  # what Launch answered, shown once on the integrations page it leads to
    launched_id: str = ""  # the integration this draft became (or, editing, saved): the wizard is done

    @property
    def editing(self) -> bool:
        return bool(self.integration_id)


class DraftRepo:
    def __init__(self, storage: Storage, clock: Clock):
        self.table = storage.table(DRAFTS_TABLE)
        self.clock = clock

    def new(self, account: str, user: str, kind: str, **values: Any) -> Draft:
        """A new draft; the account's expired drafts are removed on the way (nothing else removes them)."""
        now = self.clock.now()
        draft = Draft(account, uuid.uuid4().hex, user, kind, iso(now), **values)
        self.save(draft)
        self._purge(account, iso(now - DRAFT_LIFETIME))
        return draft

    def _purge(self, account: str, before: str) -> None:
        expired = self.table.query_entities(
            "PartitionKey eq @pk and created_at lt @before", parameters={"pk": account, "before": before}
        )
        for entity in expired:
            try:
                self.table.delete_entity(account, entity["RowKey"])
            except ResourceNotFoundError:
                pass  # another request purged it first

    def get(self, account: str, draft_id: str, user: str) -> Draft | None:
        """The user's own draft, if it exists and is not older than a day."""
        if not draft_id.isalnum() or len(draft_id) != 32:
            return None
        try:
            entity = self.table.get_entity(account, draft_id)
        except ResourceNotFoundError:
            return None
        draft = Draft(**json.loads(entity["data"]))
        if draft.user != user or parse_instant(draft.created_at, "stored") + DRAFT_LIFETIME < self.clock.now():
            return None
        return draft

    def save(self, draft: Draft) -> None:
        entity = {
            "PartitionKey": draft.account,
            "RowKey": draft.id,
            "created_at": draft.created_at,  # ISO 8601 UTC: compares as text, for the purge
            "data": json.dumps(asdict(draft)),
        }
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
