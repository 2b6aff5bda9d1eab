"""Who may manage which account: the members table (one entity per account and user).

The console and every API request made on behalf of a signed-in user are authorized against it
(exporter/access.py). Operators manage it with `python -m exporter members add/list/remove`.
"""

from __future__ import annotations

import builtins
import re
from typing import TYPE_CHECKING

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from .clock import Clock, iso
from .errors import InputError
from .history import ABSENT, MEMBER, HistoryRepo
from .storage import MEMBERS_TABLE, Storage
from .validation import check_account

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from .ucd.values import Json

MAX_USER = 256
MEMBERSHIP = "member"  # the version of a member subject that exists (history: ABSENT before an add)
# A user is the name App Service Authentication gives (an e-mail or user principal name) or a
# development sign-in name: printable, no spaces, none of the characters Table keys refuse.
USER_RE = re.compile(r"^[^\s/\\#?\x00-\x1f\x7f]{1,256}$")


def check_user(value: object, field: str = "user") -> str:
    """A user name, compared case-insensitively (e-mail addresses are): returned in lowercase."""
    if not isinstance(value, str) or not USER_RE.fullmatch(value.strip()):
        raise InputError(
            f"must be a user name of 1 to {MAX_USER} characters without spaces, '/', '\\', '#' or '?' "
            "(the e-mail address or user principal name the user signs in with)",
            field=field,
        )
    return value.strip().lower()


class MemberRepo:
    """Members in Table Storage: PartitionKey the account, RowKey the user (lowercase)."""

    def __init__(self, storage: Storage, clock: Clock):
        self.table: TableClient = storage.table(MEMBERS_TABLE)
        self.clock = clock
        self.history = HistoryRepo(storage, clock)

    def add(self, account: str, user: str) -> dict[str, Json]:
        """Idempotent: adding a member twice keeps one membership and one history entry."""
        account, user = check_account(account), check_user(user)
        if not self.is_member(account, user):
            entry = self.history.intend(account, MEMBER, user, "added", (), ABSENT, MEMBERSHIP)
            self.table.upsert_entity(
                {"PartitionKey": account, "RowKey": user, "added_at": iso(self.clock.now())}, mode=UpdateMode.MERGE
            )
            self.history.confirm(entry)
        return {"account": account, "user": user, "member": True}

    def remove(self, account: str, user: str) -> dict[str, Json]:
        """Idempotent: removing a user who is not a member answers the same (and records nothing)."""
        account, user = check_account(account), check_user(user)
        if self.is_member(account, user):
            entry = self.history.intend(account, MEMBER, user, "removed", (), MEMBERSHIP, ABSENT)
            self.table.delete_entity(account, user)
            self.history.confirm(entry)
        return {"account": account, "user": user, "member": False}

    def version(self, account: str, user: str) -> str:
        """A member subject's current version, for the history."""
        return MEMBERSHIP if self.is_member(account, user) else ABSENT

    def list(self, account: str) -> dict[str, Json]:
        account = check_account(account)
        entities = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": account})
        return {"account": account, "members": sorted(e["RowKey"] for e in entities)}

    def is_member(self, account: str, user: str) -> bool:
        """A point read; a malformed account or user is simply no membership."""
        try:
            account, user = check_account(account), check_user(user)
        except InputError:
            return False
        try:
            self.table.get_entity(account, user)
        except ResourceNotFoundError:
            return False
        return True

    def accounts_of(self, user: str) -> builtins.list[str]:  # `list` is a method here
        """The accounts a user may manage (a scan by RowKey: the table holds one row per membership)."""
        entities = self.table.query_entities("RowKey eq @user", parameters={"user": check_user(user)})
        return sorted(e["PartitionKey"] for e in entities)
