"""The UCD upsert protocol: exact (one stored row per event identity) and durable, whatever crashes.

Each step survives a crash of the process at any point:
1. profiles merged and the catalog extended (idempotent merges, `profiles.py`);
2. a *segment intent* is written: `pending`, with a deadline;
3. every event is *claimed* in the dedup index (`ucdevents`, one entity per event_id) for that
   segment; an event already claimed by a committed segment is a duplicate; one claimed by a dead
   segment (aborted, or pending past its deadline with no blob) is taken over with an ETag update;
4. the entry time is stamped on the intent (ETag-guarded: a taken-over intent cannot stamp);
5. the segment blob is committed in one put whose server-side timeout ends before the deadline,
   so a row with entry time t is visible before t + commit timeout < t + settle;
6. the intent is marked `committed` (a pending intent whose blob exists counts as committed too).
A retry of the same request finds its events claimed by either a committed segment (duplicates)
or a dead one (taken over), so it neither loses nor duplicates an event.
A request first commits the events it claimed outright; only then, holding no pending claim, does it
wait for events other requests hold, and it commits the dead ones it took over as a further segment.
So no request waits while another waits on it: overlapping concurrent upserts cannot deadlock.
A write whose answer was lost (storage applied it, the connection dropped) is read back before it is
judged: a claim, intent or stamp that names our segment is our own write, never another request's.
See docs/invariants.md (exactly once, settle) and docs/architecture.md (the UCD).
"""
from __future__ import annotations

import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.storage.blob import ContainerClient

from .. import telemetry
from ..clock import Clock
from ..errors import TransientError
from ..storage import UCD_EVENTS_TABLE, UCD_SEGMENTS_TABLE, Storage
from .profiles import Profiles
from .request import EventDraft, UpsertRequest
from .segments import attribute_column, encode_segment, param_column, segment_path, to_ms
from .tables import WORKERS, get_or_none

TRANSACTION_SIZE = 100
# The dedup index is partitioned by account and the first hex digit of the event id: 16 partitions
# per account. Few enough that a request's claims fill 100-entity transactions (one round trip per
# 100 events), enough to spread an account's ingest over several partition servers.
CLAIM_PARTITION_CHARS = 1


def claim_partition(account: str, event_id: str) -> str:
    """The dedup index partition that holds an event's claim."""
    return f"{account}~{event_id[:CLAIM_PARTITION_CHARS]}"


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert answers: events received, newly stored, and already stored (duplicates)."""

    received_events: int
    stored_events: int
    duplicate_events: int

    def to_json(self) -> dict[str, int]:
        return {
            "received_events": self.received_events,
            "stored_events": self.stored_events,
            "duplicate_events": self.duplicate_events,
        }


def no_fault(point: str) -> None:
    """The production fault hook: no crash anywhere."""
    return None


@dataclass
class _Segment:
    """One segment being stored: its intent as last read, and whether a put of it may still land."""

    id: str
    intent: Any = None
    put_pending: bool = False


class Ingest:
    """Upserts: profiles and catalog first, then the events through intents, claims and one segment put."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        profiles: Profiles,
        container: ContainerClient,
        *,
        commit_timeout_seconds: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fault: Callable[[str], None] = no_fault,
    ):
        self.clock = clock
        self.profiles = profiles
        self.container = container
        self.commit_timeout = commit_timeout_seconds or storage.settings.ucd_commit_timeout_seconds
        # Before it is stamped an intent may take a while to claim a large request's events.
        self.claim_budget = max(60, 3 * self.commit_timeout)
        self.sleep = sleep
        self.fault = fault  # tests inject a crash between any two storage writes
        self.poll_interval = 0.25
        self.events = storage.table(UCD_EVENTS_TABLE)
        self.segments_table = storage.table(UCD_SEGMENTS_TABLE)

    def upsert(self, request: UpsertRequest) -> UpsertResult:
        """Store the request's events once each; profiles merged, catalog extended."""
        account = request.account
        unique: dict[str, EventDraft] = {}
        for user in request.users:
            for event in user.events:
                unique.setdefault(event.event_id, event)
        attributes = self.profiles.merge(account, request.users)
        self.fault("after_profiles")
        self.profiles.extend_catalog(account, request.users)
        self.fault("after_catalog")
        if not unique:
            return UpsertResult(request.received_events, 0, request.received_events)

        stored, contested = self._store_segment(account, len(unique), lambda sid: self._claim(account, list(unique.values()), sid), attributes)
        # Only now, holding no pending claim, wait for the events other requests hold. A request never
        # waits while others may wait on it, so overlapping concurrent upserts cannot deadlock.
        states: dict[str, str] = {}  # shared by the threads: a racing double lookup is harmless
        while contested:
            dead = self._await_owners(account, contested, states)
            if not dead:
                break
            taken, contested = self._store_segment(account, len(dead), lambda sid: self._take_over(dead, sid), attributes)
            stored += taken
        result = UpsertResult(request.received_events, stored, request.received_events - stored)
        telemetry.record_upsert(account, result.received_events, result.stored_events, result.duplicate_events)
        return result

    def _store_segment(self, account, events: int, claim, attributes) -> tuple[int, list]:
        """One segment: intent, claims (`claim(segment_id)` → (ours, contested)), commit; return (stored, contested).

        If the request fails before its put can have started, the intent is aborted at once, so the
        claims it holds are free for the request's retry instead of blocking it until their deadline.
        """
        segment = _Segment(uuid.uuid4().hex)
        try:
            segment.intent = self._create_intent(account, segment.id, events)
            self.fault("after_intent")
            ours, contested = claim(segment.id)
            self.fault("after_claims")
            if ours:
                self._commit_segment(account, segment, ours, attributes)
            else:
                self._set_intent_state(account, segment.id, "aborted")
        except Exception:  # noqa: BLE001 - re-raised; a crash (BaseException) leaves the intent to its deadline
            self._give_up(account, segment)
            raise
        return len(ours), contested

    def _give_up(self, account: str, segment: "_Segment") -> None:
        """Abort a failed request's intent, unless a put may still land (then its deadline decides)."""
        if segment.intent is None or segment.put_pending:
            return
        try:
            self._set_intent_state(account, segment.id, "aborted", etag=segment.intent.metadata["etag"])
        except AzureError:
            pass  # changed meanwhile (a stamp whose answer was lost) or unreachable: the deadline frees the claims

    def _commit_segment(self, account: str, segment: "_Segment", ours: list[EventDraft], attributes) -> None:
        """Stamp the entry time, put the blob, mark the intent committed; a put that did not land is restamped."""
        data = _encode(ours, attributes)
        last_error: AzureError | None = None
        for _attempt in range(3):
            entry_ms = to_ms(self.clock.now())
            path = segment_path(account, entry_ms, segment.id)
            segment.intent = self._stamp_intent(account, segment.id, segment.intent, path, entry_ms)
            self.fault("after_stamp")
            last_error = self._put(segment, path, data)
            if last_error is None:
                self.fault("after_upload")
                self._mark_committed(account, segment.id)
                self.fault("after_commit_mark")
                return
        self._set_intent_state(account, segment.id, "aborted")
        raise TransientError(f"the event store could not commit a segment ({type(last_error).__name__}); retry the request")

    def _put(self, segment: "_Segment", path: str, data: bytes) -> AzureError | None:
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

    def _mark_committed(self, account: str, segment_id: str) -> None:
        """Idempotent, so retried on a lost answer; if it still fails, the landed blob says committed anyway."""
        for attempt in range(3):
            try:
                self._set_intent_state(account, segment_id, "committed")
                return
            except (ServiceRequestError, ServiceResponseError):
                if attempt == 2:
                    raise

    # ---------------------------------------------------------------- intents and claims

    def _create_intent(self, account: str, segment_id: str, events: int):
        now_ms = to_ms(self.clock.now())
        entity = {
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
                self.segments_table.create_entity(entity)
                break
            except ResourceExistsError:
                break  # the segment id is this request's own: an earlier attempt's create landed
            except (ServiceRequestError, ServiceResponseError):
                if get_or_none(self.segments_table, account, segment_id) is not None or attempt == 2:
                    break  # landed, its answer lost (or give up: the read below raises if it is absent)
        return self.segments_table.get_entity(account, segment_id)

    def _stamp_intent(self, account, segment_id, intent, path, entry_ms):
        entity = dict(intent)
        # Table ints are 32-bit; milliseconds are kept as decimal strings.
        entity.update(path=path, entry_ms=str(entry_ms), deadline_ms=str(entry_ms + self.commit_timeout * 1000))
        try:
            self.segments_table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=intent.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            # Either another request aborted this intent, or our own stamp landed and the SDK's retry
            # of it met the new ETag: the intent's content tells which.
            current = self.segments_table.get_entity(account, segment_id)
            if current.get("state") == "pending" and current.get("path") == path and current.get("entry_ms") == str(entry_ms):
                return current
            raise TransientError("a concurrent request took over these events; retry the request") from None
        return self.segments_table.get_entity(account, segment_id)

    def _set_intent_state(self, account, segment_id, state, etag: str | None = None) -> None:
        entity = {"PartitionKey": account, "RowKey": segment_id, "state": state}
        if etag:
            self.segments_table.update_entity(entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified)
        else:
            self.segments_table.update_entity(entity, mode=UpdateMode.MERGE)

    def _claim(self, account: str, events: list[EventDraft], segment_id: str):
        """Claim each event for this segment; return (claimed, contested as (partition, event))."""
        by_partition: dict[str, list[EventDraft]] = defaultdict(list)
        for e in events:
            by_partition[claim_partition(account, e.event_id)].append(e)
        chunks = [
            (pk, group[i : i + TRANSACTION_SIZE])
            for pk, group in by_partition.items()
            for i in range(0, len(group), TRANSACTION_SIZE)
        ]
        ours: list[EventDraft] = []
        contested: list[tuple[str, EventDraft]] = []
        with ThreadPoolExecutor(WORKERS) as pool:
            for won, lost in pool.map(lambda c: self._claim_chunk(c[0], c[1], segment_id), chunks):
                ours.extend(won)
                contested.extend(lost)
        return ours, contested

    def _claim_chunk(self, pk: str, chunk: list[EventDraft], segment_id: str):
        ops = [("create", {"PartitionKey": pk, "RowKey": e.event_id, "segment": segment_id}) for e in chunk]
        try:
            self.events.submit_transaction(ops)
            return chunk, []
        except (TableTransactionError, ResourceExistsError, ServiceRequestError, ServiceResponseError):
            # Some are claimed already (the transaction rolled back whole), or its answer was lost:
            # one by one, each claim tells whose it is.
            pass
        won, lost = [], []
        for e in chunk:
            if self._claim_one(pk, e.event_id, segment_id):
                won.append(e)
            else:
                lost.append((pk, e))
        return won, lost

    def _claim_one(self, pk: str, event_id: str, segment_id: str) -> bool:
        """Create one claim; an existing claim is ours only if it names our segment (a create whose
        answer was lost has landed: "already exists" then means us, not another request)."""
        for attempt in range(3):
            try:
                self.events.create_entity({"PartitionKey": pk, "RowKey": event_id, "segment": segment_id})
                return True
            except ResourceExistsError:
                return self.events.get_entity(pk, event_id)["segment"] == segment_id
            except (ServiceRequestError, ServiceResponseError):
                # The create is not retried by the SDK (a POST): its outcome is unknown until read.
                claim = get_or_none(self.events, pk, event_id)
                if claim is not None:
                    return claim["segment"] == segment_id
                if attempt == 2:
                    raise
        return False

    def _await_owners(self, account, contested, states: dict[str, str]):
        """Wait until the owner of each contested event has committed or died; return the dead ones' claims."""
        with ThreadPoolExecutor(WORKERS) as pool:
            found = list(pool.map(lambda c: self._await_owner(account, c[0], c[1].event_id, states), contested))
        return [(pk, e, claim) for (pk, e), claim in zip(contested, found) if claim is not None]

    def _await_owner(self, account, pk, event_id, states: dict[str, str]):
        """An event claimed by another segment: None if that segment committed it (a duplicate),
        else the claim (with its ETag) once its segment can no longer commit."""
        give_up = time.monotonic() + self.commit_timeout
        while True:
            claim = self.events.get_entity(pk, event_id)
            other = claim["segment"]
            state = states.get(other) or self._segment_state(account, other)
            if state in ("committed", "dead"):
                states[other] = state
            if state == "committed":
                return None
            if state == "dead":
                return claim
            if time.monotonic() > give_up:
                raise TransientError("a concurrent request is storing the same events; retry the request")
            self.sleep(self.poll_interval)

    def _take_over(self, dead, segment_id: str):
        """Move dead claims to this segment (ETag-guarded); return (taken, lost to another taker)."""
        def take(item):
            pk, event, claim = item
            try:
                self.events.update_entity(
                    {"PartitionKey": pk, "RowKey": event.event_id, "segment": segment_id},
                    mode=UpdateMode.REPLACE, etag=claim.metadata["etag"], match_condition=MatchConditions.IfNotModified,
                )
                return True
            except (ResourceModifiedError, ServiceRequestError, ServiceResponseError):
                # Someone else took it over first, or our own update landed and its answer was lost
                # (the SDK's retry then meets our new ETag): the claim's segment tells which.
                return self.events.get_entity(pk, event.event_id)["segment"] == segment_id

        with ThreadPoolExecutor(WORKERS) as pool:
            outcome = list(pool.map(take, dead))
        taken = [e for (_pk, e, _c), won in zip(dead, outcome) if won]
        lost = [(pk, e) for (pk, e, _c), won in zip(dead, outcome) if not won]
        return taken, lost

    def _segment_state(self, account: str, segment_id: str) -> str:
        """committed, dead (will never commit) or pending (may still commit)."""
        try:
            intent = self.segments_table.get_entity(account, segment_id)
        except ResourceNotFoundError:
            return "dead"
        if intent["state"] == "committed":
            return "committed"
        # The blob is the truth: an intent whose put landed is committed whatever its state says.
        if intent.get("path") and self._blob_exists(intent["path"]):
            return "committed"
        if intent["state"] == "aborted":
            return "dead"
        if to_ms(self.clock.now()) <= int(intent["deadline_ms"]):
            return "pending"
        # Past its deadline the owner's put can no longer land (server-side timeout): abort it so
        # that a late stamp by a slow owner fails on the ETag.
        try:
            self._set_intent_state(account, segment_id, "aborted", etag=intent.metadata["etag"])
        except ResourceModifiedError:
            return self._segment_state(account, segment_id)
        return "dead"

    def _blob_exists(self, path: str) -> bool:
        """Whether a segment landed; when storage cannot say, raise: "no" would allow a second copy."""
        try:
            return self.container.get_blob_client(path).exists()
        except AzureError:
            raise TransientError("the event store cannot tell whether a segment landed; retry the request") from None


def _encode(ours: list[EventDraft], attributes: dict[str, dict[str, str | None]]) -> bytes:
    """The segment of these events, each with the attributes of its user in force now."""
    param_keys = {k for e in ours for k in e.params}
    attribute_keys = {k for e in ours for k in attributes.get(e.user_id, {})}
    rows = []
    for e in ours:
        row = {"event_id": e.event_id, "user_id": e.user_id, "event_name": e.event_name, "timestamp": e.timestamp}
        row.update({param_column(k): v for k, v in e.params.items()})
        row.update({attribute_column(k): v for k, v in attributes.get(e.user_id, {}).items()})
        rows.append(row)
    return encode_segment(rows, param_keys, attribute_keys)
