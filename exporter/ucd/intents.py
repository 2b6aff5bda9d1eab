"""Segment intents and the segment put: how a segment becomes committed, and how anyone tells.

An intent is one entity of `ucdsegments`, written before any event is claimed for its segment:
`pending`, with a deadline. Just before the put the entry time and the blob's path are stamped on it
(ETag-guarded, so an intent another request has aborted cannot be stamped) and its deadline moves to
the put's server-side timeout; after the put it is marked `committed`. A request that fails before
its put can have started marks it `aborted`, freeing its claims at once.

Whether a segment committed is decided here alone (`Intents.state`): the blob is the truth, so a
pending intent whose blob exists is committed; one aborted, missing, or pending past its deadline with
no blob is dead (its put can no longer land), and its claims may be taken over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableEntity, UpdateMode
from azure.storage.blob import ContainerClient

from ..clock import Clock
from ..errors import TransientError
from .segments import to_ms
from .tables import get_or_none

# What a request may conclude about another request's segment: it committed, it never will (dead), or
# it may still (pending: wait for it). `aborted` is only ever written; read back it means dead.
OwnerState = Literal["committed", "dead", "pending"]
Mark = Literal["committed", "aborted"]
# An intent as written, or as read back (a TableEntity, which also carries its ETag).
Intent = dict[str, object]


@dataclass
class Segment:
    """One segment being stored: its intent as last written or read (and that ETag), and whether a put of it may still land."""

    id: str
    intent: Intent | None = None
    etag: str | None = None
    put_pending: bool = False


class Intents:
    """The intents of every account's segments, and the put of each segment's blob."""

    def __init__(
        self,
        table: TableClient,
        container: ContainerClient,
        clock: Clock,
        *,
        commit_timeout: int,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.table = table
        self.container = container
        self.clock = clock
        self.commit_timeout = commit_timeout
        # Before it is stamped an intent may take a while to claim a large request's events.
        self.claim_budget = max(60, 3 * commit_timeout)
        self.sleep = sleep

    def create(self, account: str, segment_id: str, events: int) -> tuple[Intent, str | None]:
        """Write a pending intent; return it and its ETag (from the create's answer, or read back)."""
        now_ms = to_ms(self.clock.now())
        entity: Intent = {
            "PartitionKey": account,
            "RowKey": segment_id,
            "state": "pending",
            "events": events,
            "created_ms": str(now_ms),
            "deadline_ms": str(now_ms + self.claim_budget * 1000),
            "path": "",
        }
        for attempt in range(3):
            try:
                return entity, self.table.create_entity(entity)["etag"]
            except ResourceExistsError:
                break  # the segment id is this request's own: an earlier attempt's create landed
            except (ServiceRequestError, ServiceResponseError):
                if get_or_none(self.table, account, segment_id) is not None or attempt == 2:
                    break  # landed, its answer lost (or give up: the read below raises if it is absent)
        current = self.table.get_entity(account, segment_id)
        return current, current.metadata["etag"]

    def drop(self, account: str, segment_id: str, created: Future[tuple[Intent, str | None]]) -> None:
        """Delete an intent that no claim names (best effort: a leftover one is never looked at)."""
        try:
            created.result()
        except Exception:  # noqa: BLE001 - it may have landed all the same: delete it anyway
            pass
        try:
            self.table.delete_entity(account, segment_id)
        except AzureError:
            pass

    def stamp(self, account: str, segment: Segment, path: str, entry_ms: int) -> None:
        """Stamp the entry time and path on the segment's intent, unless another request aborted it."""
        entity = dict(segment.intent or {})
        # Table ints are 32-bit; milliseconds are kept as decimal strings.
        entity.update(path=path, entry_ms=str(entry_ms), deadline_ms=str(entry_ms + self.commit_timeout * 1000))
        try:
            answer = self.table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=segment.etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            # Either another request aborted this intent, or our own stamp landed and the SDK's retry
            # of it met the new ETag: the intent's content tells which.
            current = self.table.get_entity(account, segment.id)
            if (
                current.get("state") == "pending"
                and current.get("path") == path
                and current.get("entry_ms") == str(entry_ms)
            ):
                segment.intent, segment.etag = current, current.metadata["etag"]
                return
            raise TransientError("a concurrent request took over these events; retry the request") from None
        segment.intent, segment.etag = entity, answer["etag"]

    def set_state(self, account: str, segment_id: str, state: Mark, etag: str | None = None) -> None:
        """Mark an intent (`committed` or `aborted`); with an ETag, only if nobody changed it since."""
        entity = {"PartitionKey": account, "RowKey": segment_id, "state": state}
        if etag:
            self.table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        else:
            self.table.update_entity(entity, mode=UpdateMode.MERGE)

    def abort(self, account: str, segment: Segment) -> None:
        """Abort a failed request's intent, unless a put may still land (then its deadline decides)."""
        if segment.intent is None or segment.put_pending:
            return
        try:
            self.set_state(account, segment.id, "aborted", etag=segment.etag)
        except AzureError:
            pass  # changed meanwhile (a stamp whose answer was lost) or unreachable: the deadline frees the claims

    def mark_committed(self, account: str, segment_id: str) -> None:
        """Idempotent, so retried on a lost answer; if it still fails, the landed blob says committed anyway."""
        for attempt in range(3):
            try:
                self.set_state(account, segment_id, "committed")
                return
            except (ServiceRequestError, ServiceResponseError):
                if attempt == 2:
                    raise

    def put(self, segment: Segment, path: str, data: bytes) -> AzureError | None:
        """Put the segment blob once: None if it landed, else the error, known final (no put still running)."""
        started = time.monotonic()
        segment.put_pending = True
        try:
            # One attempt only (retry_total=0): an SDK retry after its back-off would land the put
            # after the deadline, with the old entry time, perhaps after another request took over.
            self.container.upload_blob(path, data, overwrite=False, timeout=self.commit_timeout, retry_total=0)
        except ResourceExistsError:
            pass  # a previous attempt's put did land
        except AzureError as exc:
            # A failed put may still be running on the server until its server-side timeout; only
            # after that is "no blob" final, and a restamped put cannot race the old one.
            self.sleep(max(0.0, started + self.commit_timeout - time.monotonic()))
            if not self._blob_exists(path):  # raises when storage cannot say: then no second put
                segment.put_pending = False
                return exc  # restamp and retry: the row must not carry an entry time older than its commit
        return None

    def state(self, account: str, segment_id: str) -> tuple[OwnerState, TableEntity | None]:
        """(committed, dead (will never commit) or pending (may still commit), its intent or None)."""
        try:
            intent = self.table.get_entity(account, segment_id)
        except ResourceNotFoundError:
            return "dead", None
        if intent["state"] == "committed":
            return "committed", intent
        # The blob is the truth: an intent whose put landed is committed whatever its state says.
        if intent.get("path") and self._blob_exists(intent["path"]):
            return "committed", intent
        if intent["state"] == "aborted":
            return "dead", intent
        if to_ms(self.clock.now()) <= int(intent["deadline_ms"]):
            return "pending", intent
        # Past its deadline the owner's put can no longer land (server-side timeout): abort it so
        # that a late stamp by a slow owner fails on the ETag.
        try:
            self.set_state(account, segment_id, "aborted", etag=intent.metadata["etag"])
        except ResourceModifiedError:
            return self.state(account, segment_id)
        return "dead", intent

    def _blob_exists(self, path: str) -> bool:
        """Whether a segment landed; when storage cannot say, raise: "no" would allow a second copy."""
        try:
            return self.container.get_blob_client(path).exists()
        except AzureError:
            raise TransientError("the event store cannot tell whether a segment landed; retry the request") from None
