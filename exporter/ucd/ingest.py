"""The UCD upsert protocol: exact (one stored row per event identity) and durable, whatever crashes.

Each step survives a crash of the process at any point:
1. profiles merged and the catalog extended (idempotent merges, `profiles.py`);
2. a *segment intent* is written: `pending`, with a deadline (while step 1 runs: nothing names it yet);
3. every event is *claimed* in the dedup index (`ucdevents`, one entity per event_id) for that
   segment; an event already claimed by (or found in the blob of) a committed segment is a duplicate; one claimed by a dead
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

Costs. The intent is written while the profiles merge (no claim names it yet, so a failure or a
refused merge deletes it and leaves nothing); the catalog is not read again for names and keys this
process has seen it hold (it only grows). Claims go in 100-entity transactions. A transaction
that meets an existing claim rolls back whole; the claim it names is read, and its segment looked up
once per request: if that segment committed, its blob lists every event it stored, so all of them are
duplicates without a read of their claims, and the rest of the chunk is claimed in one transaction
again. A resend of stored events therefore costs a few reads per owner segment, not per event. Only
claims of segments that are pending or dead are read one by one (each needs its ETag to be taken
over), and owners are awaited once per segment, not per event. (One query ORing a chunk's row keys is
no way out: Azure Tables answers it with a scan of the whole partition, and allows 15 comparisons.)
See docs/invariants.md (exactly once, settle) and docs/architecture.md (the UCD).
"""

from __future__ import annotations

import functools
import io
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableErrorCode, TableTransactionError, UpdateMode
from azure.storage.blob import ContainerClient

from .. import telemetry
from ..clock import Clock
from ..errors import TransientError
from ..storage import UCD_EVENTS_TABLE, UCD_SEGMENTS_TABLE, Storage
from .profiles import Profiles
from .request import EventDraft, UpsertRequest, UserDraft
from .segments import attribute_column, encode_segment, param_column, segment_path, to_ms
from .tables import WORKERS, get_or_none

TRANSACTION_SIZE = 100
# The dedup index is partitioned by account and the first hex digit of the event id: 16 partitions
# per account. Few enough that a request's claims fill 100-entity transactions (one round trip per
# 100 events), enough to spread an account's ingest over several partition servers.
CLAIM_PARTITION_CHARS = 1
CLAIM_PARTITIONS = 16**CLAIM_PARTITION_CHARS
# Events of committed owner segments a request may read from their blobs to recognise its duplicates:
# a resend reads about as many as it sends; beyond this it reads the claims one by one.
OWNER_READ_FACTOR = 2
OWNER_READ_EXTRA = 10_000
CATALOG_CACHE_ACCOUNTS = 10_000  # accounts whose catalog this process remembers (then it starts afresh)


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
    """One segment being stored: its intent as last written or read (and that ETag), and whether a put of it may still land."""

    id: str
    intent: dict[str, Any] | None = None
    etag: str | None = None
    put_pending: bool = False


# A contested event: (dedup partition, the event, its claim as read, with the claim's ETag).
Contested = tuple[str, EventDraft, Any]


@dataclass
class _Owners:
    """What one request learns about the segments holding claims on its events; shared by its threads.

    A segment's final state (committed or dead) is looked up once. A committed segment's event ids are
    read once from its blob (within `budget` events): the request's events found there are duplicates
    (`stored`), known without reading their claims.
    """

    wanted: frozenset[str]
    budget: int
    stored: frozenset[str] = frozenset()
    states: dict[str, str] = field(default_factory=dict)
    learning: dict[str, Future] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def unknown(self, events: list[EventDraft]) -> list[EventDraft]:
        """The events not known to be stored already."""
        stored = self.stored
        return [e for e in events if e.event_id not in stored]

    def wait_learning(self) -> None:
        """Wait for the segments being learned now (their events may answer a conflict without a read)."""
        with self.lock:
            pending = list(self.learning.values())
        for future in pending:
            future.exception()  # waits until it is learned; a failure is its learner's to raise


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
        # What this process has seen each account's catalog hold: the catalog only grows, so a request
        # whose event names and keys are all known here has nothing to add to it.
        self._catalog_seen: dict[str, dict[tuple[str, str], frozenset[str]]] = {}
        self._catalog_lock = threading.Lock()

    def upsert(self, request: UpsertRequest) -> UpsertResult:
        """Store the request's events once each; profiles merged, catalog extended."""
        account = request.account
        unique: dict[str, EventDraft] = {}
        for user in request.users:
            for event in user.events:
                unique.setdefault(event.event_id, event)
        if not unique:
            self.profiles.merge(account, request.users)
            self.fault("after_profiles")
            self._extend_catalog(account, request.users)
            self.fault("after_catalog")
            return UpsertResult(request.received_events, 0, request.received_events)

        first = _Segment(uuid.uuid4().hex)
        attributes = self._prepare(request, first, len(unique))
        owners = _Owners(frozenset(unique), OWNER_READ_FACTOR * len(unique) + OWNER_READ_EXTRA)
        events = list(unique.values())
        stored, contested = self._store_segment(
            account, first, lambda sid: self._claim(account, events, sid, owners), attributes
        )
        # Only now, holding no pending claim, wait for the events other requests hold. A request never
        # waits while others may wait on it, so overlapping concurrent upserts cannot deadlock.
        while contested:
            dead = self._await_owners(account, contested, owners)
            if not dead:
                break
            taken, contested = self._store_segment(
                account,
                _Segment(uuid.uuid4().hex),
                functools.partial(self._take_over, dead),
                attributes,
                events=len(dead),
            )
            stored += taken
        result = UpsertResult(request.received_events, stored, request.received_events - stored)
        telemetry.record_upsert(account, result.received_events, result.stored_events, result.duplicate_events)
        return result

    def _prepare(self, request: UpsertRequest, segment: _Segment, events: int) -> dict[str, dict[str, str | None]]:
        """Merge the profiles and extend the catalog while the first segment's intent is written.

        No claim names the intent before this returns, so if the merge is refused (bad input) or fails,
        the intent is deleted and nothing of the request stays; after a crash it is a pending intent
        that nothing refers to.
        """
        account = request.account
        with ThreadPoolExecutor(1) as side:
            created = side.submit(self._create_intent, account, segment.id, events)
            try:
                attributes = self.profiles.merge(account, request.users)
                self.fault("after_profiles")
                self._extend_catalog(account, request.users)
                self.fault("after_catalog")
            except Exception:  # re-raised; a crash (BaseException) leaves the claimless intent
                self._drop_intent(account, segment.id, created)
                raise
            segment.intent, segment.etag = created.result()
        return attributes

    def _extend_catalog(self, account: str, users: list[UserDraft]) -> None:
        """Extend the catalog (`Profiles.extend_catalog`), unless this process has seen it hold already
        every event name, parameter key (with its kind) and attribute key of these users."""
        entries: dict[tuple[str, str], set[str]] = defaultdict(set)
        entries[("attributes", "")] = set()  # written even when empty
        for user in users:
            entries[("attributes", "")].update(user.attributes)
            for e in user.events:
                entries[("event", e.event_name)].update(e.params)
                # A parameter's kind may widen the entry too (integer → number → string): known pairs only.
                entries[("kind", e.event_name)].update(f"{key}\x00{kind}" for key, kind in e.kinds.items())
        with self._catalog_lock:
            seen = self._catalog_seen.get(account, {})
            if all(entry in seen and keys <= seen[entry] for entry, keys in entries.items()):
                return
        self.profiles.extend_catalog(account, users)
        with self._catalog_lock:
            if account not in self._catalog_seen and len(self._catalog_seen) >= CATALOG_CACHE_ACCOUNTS:
                self._catalog_seen.clear()
            seen = self._catalog_seen.setdefault(account, {})
            for entry, keys in entries.items():
                seen[entry] = seen.get(entry, frozenset()) | keys

    def _drop_intent(self, account: str, segment_id: str, created: Future) -> None:
        """Delete an intent that no claim names (best effort: a leftover one is never looked at)."""
        try:
            created.result()
        except Exception:  # noqa: BLE001 - it may have landed all the same: delete it anyway
            pass
        try:
            self.segments_table.delete_entity(account, segment_id)
        except AzureError:
            pass

    def _store_segment(
        self, account, segment: _Segment, claim, attributes, events: int = 0
    ) -> tuple[int, list[Contested]]:
        """One segment: intent (unless written already), claims (`claim(segment_id)` → (ours, contested)),
        commit; return (stored, contested).

        If the request fails before its put can have started, the intent is aborted at once, so the
        claims it holds are free for the request's retry instead of blocking it until their deadline.
        """
        try:
            if segment.intent is None:
                segment.intent, segment.etag = self._create_intent(account, segment.id, events)
            self.fault("after_intent")
            ours, contested = claim(segment.id)
            self.fault("after_claims")
            if ours:
                self._commit_segment(account, segment, ours, attributes)
            else:
                self._set_intent_state(account, segment.id, "aborted")
        except Exception:
            self._give_up(account, segment)
            raise
        return len(ours), contested

    def _give_up(self, account: str, segment: _Segment) -> None:
        """Abort a failed request's intent, unless a put may still land (then its deadline decides)."""
        if segment.intent is None or segment.put_pending:
            return
        try:
            self._set_intent_state(account, segment.id, "aborted", etag=segment.etag)
        except AzureError:
            pass  # changed meanwhile (a stamp whose answer was lost) or unreachable: the deadline frees the claims

    def _commit_segment(self, account: str, segment: _Segment, ours: list[EventDraft], attributes) -> None:
        """Stamp the entry time, put the blob, mark the intent committed; a put that did not land is restamped."""
        data = _encode(ours, attributes)
        last_error: AzureError | None = None
        for _attempt in range(3):
            entry_ms = to_ms(self.clock.now())
            path = segment_path(account, entry_ms, segment.id)
            segment.intent, segment.etag = self._stamp_intent(account, segment, path, entry_ms)
            self.fault("after_stamp")
            last_error = self._put(segment, path, data)
            if last_error is None:
                self.fault("after_upload")
                self._mark_committed(account, segment.id)
                self.fault("after_commit_mark")
                return
        self._set_intent_state(account, segment.id, "aborted")
        raise TransientError(
            f"the event store could not commit a segment ({type(last_error).__name__}); retry the request"
        )

    def _put(self, segment: _Segment, path: str, data: bytes) -> AzureError | None:
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

    def _create_intent(self, account: str, segment_id: str, events: int) -> tuple[dict[str, Any], str | None]:
        """Write a pending intent; return it and its ETag (from the create's answer, or read back)."""
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
                return entity, self.segments_table.create_entity(entity)["etag"]
            except ResourceExistsError:
                break  # the segment id is this request's own: an earlier attempt's create landed
            except (ServiceRequestError, ServiceResponseError):
                if get_or_none(self.segments_table, account, segment_id) is not None or attempt == 2:
                    break  # landed, its answer lost (or give up: the read below raises if it is absent)
        current = self.segments_table.get_entity(account, segment_id)
        return current, current.metadata["etag"]

    def _stamp_intent(
        self, account: str, segment: _Segment, path: str, entry_ms: int
    ) -> tuple[dict[str, Any], str | None]:
        entity = dict(segment.intent or {})
        # Table ints are 32-bit; milliseconds are kept as decimal strings.
        entity.update(path=path, entry_ms=str(entry_ms), deadline_ms=str(entry_ms + self.commit_timeout * 1000))
        try:
            answer = self.segments_table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=segment.etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            # Either another request aborted this intent, or our own stamp landed and the SDK's retry
            # of it met the new ETag: the intent's content tells which.
            current = self.segments_table.get_entity(account, segment.id)
            if (
                current.get("state") == "pending"
                and current.get("path") == path
                and current.get("entry_ms") == str(entry_ms)
            ):
                return current, current.metadata["etag"]
            raise TransientError("a concurrent request took over these events; retry the request") from None
        return entity, answer["etag"]

    def _set_intent_state(self, account, segment_id, state, etag: str | None = None) -> None:
        entity = {"PartitionKey": account, "RowKey": segment_id, "state": state}
        if etag:
            self.segments_table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        else:
            self.segments_table.update_entity(entity, mode=UpdateMode.MERGE)

    def _claim(self, account: str, events: list[EventDraft], segment_id: str, owners: _Owners):
        """Claim each event for this segment; return (claimed, contested). Events found stored are neither."""
        by_partition: dict[str, list[EventDraft]] = defaultdict(list)
        for e in events:
            by_partition[claim_partition(account, e.event_id)].append(e)
        chunks = [
            (pk, group[i : i + TRANSACTION_SIZE])
            for pk, group in by_partition.items()
            for i in range(0, len(group), TRANSACTION_SIZE)
        ]
        ours: list[EventDraft] = []
        contested: list[Contested] = []
        with ThreadPoolExecutor(WORKERS) as pool:
            for won, lost in pool.map(lambda c: self._claim_chunk(account, c[0], c[1], segment_id, owners), chunks):
                ours.extend(won)
                contested.extend(lost)
        return ours, contested

    def _claim_chunk(self, account: str, pk: str, chunk: list[EventDraft], segment_id: str, owners: _Owners):
        """Claim a chunk's events in one transaction; return (won, contested).

        A transaction is all or nothing. When it meets an existing claim, that claim is read: if its
        segment committed, the segment's events (read once per request) are duplicates and the rest is
        claimed again in one transaction; otherwise every claim of the chunk is read and judged.
        """
        won: list[EventDraft] = []
        lost: list[Contested] = []
        pending = owners.unknown(chunk)
        unanswered = 0
        while pending:
            claim = None
            try:
                self.events.submit_transaction(
                    [("create", {"PartitionKey": pk, "RowKey": e.event_id, "segment": segment_id}) for e in pending]
                )
                won.extend(pending)
                break
            except TableTransactionError as exc:
                if getattr(exc, "error_code", None) != TableErrorCode.ENTITY_ALREADY_EXISTS:
                    raise
                suspect = pending[exc.index] if 0 <= exc.index < len(pending) else pending[0]
            except ResourceExistsError:
                suspect = pending[0]
            except (ServiceRequestError, ServiceResponseError):
                # Unanswered (a POST is not retried by the SDK): the transaction landed whole or not at
                # all, and its first claim tells which. A claim naming our segment is our own write.
                unanswered += 1
                suspect = pending[0]
                claim = get_or_none(self.events, pk, suspect.event_id)
                if claim is None:
                    if unanswered == 3:
                        raise
                    continue
                if claim["segment"] == segment_id:
                    won.extend(pending)
                    break
            if claim is None:
                owners.wait_learning()  # the chunks of a resend meet the same owners at once: one learns, the others wait
                if suspect.event_id in owners.stored:
                    pending = owners.unknown(pending)
                    continue
                claim = get_or_none(self.events, pk, suspect.event_id)
            before = len(pending)
            if (
                claim is not None
                and claim["segment"] != segment_id
                and self._learn(account, claim["segment"], owners)
                and suspect.event_id in owners.stored
            ):
                pending = owners.unknown(pending)
            else:
                pending = self._judge_each(pk, pending, segment_id, won, lost)
            if len(pending) == before:
                raise TransientError("the dedup index refused claims it does not hold; retry the request")
        return won, lost

    def _judge_each(
        self, pk: str, pending: list[EventDraft], segment_id: str, won: list, lost: list
    ) -> list[EventDraft]:
        """Read each claim: ours (a write whose answer was lost), another segment's (contested, with its
        ETag), or none (returned, to be claimed)."""
        free = []
        for e in pending:
            claim = get_or_none(self.events, pk, e.event_id)
            if claim is None:
                free.append(e)
            elif claim["segment"] == segment_id:
                won.append(e)
            else:
                lost.append((pk, e, claim))
        return free

    def _learn(self, account: str, segment_id: str, owners: _Owners) -> bool:
        """Whether another segment committed and its events are now in `owners.stored` (once per segment)."""
        with owners.lock:
            future = owners.learning.get(segment_id)
            mine = future is None
            if future is None:
                future = owners.learning[segment_id] = Future()
        if not mine:
            return future.result()
        try:
            known = self._read_owner(account, segment_id, owners)
        except BaseException as exc:  # handed to the threads waiting on this segment, and re-raised
            future.set_exception(exc)
            raise
        future.set_result(known)
        return known

    def _read_owner(self, account: str, segment_id: str, owners: _Owners) -> bool:
        state, intent = self._owner_state(account, segment_id)
        if state != "pending":
            owners.states[segment_id] = state
        if state != "committed" or intent is None:
            return False
        with owners.lock:
            events = int(intent.get("events") or 0)
            if events > owners.budget:
                return False  # a large segment holding few of ours: their claims are read instead
            owners.budget -= events
        try:
            data = self.container.download_blob(intent["path"]).readall()
            ids = pq.read_table(io.BytesIO(data), columns=["event_id"]).column("event_id").to_pylist()
        except (AzureError, pa.ArrowException):
            return False  # the claims will tell, one read each
        found = owners.wanted.intersection(ids)
        with owners.lock:
            owners.stored = owners.stored | found
        return True

    def _await_owners(self, account: str, contested: list[Contested], owners: _Owners) -> list[Contested]:
        """Wait until the owner of each contested event has committed or died; return the dead ones' claims.

        Owners are looked up once per segment and poll, not per event. A pending owner's claims cannot
        move (only a dead owner's are taken over), and if one was taken over meanwhile, its ETag
        tells at the take-over.
        """
        give_up = time.monotonic() + self.commit_timeout
        dead: list[Contested] = []
        waiting = contested
        while True:
            segment_ids = sorted({claim["segment"] for _pk, _e, claim in waiting})
            with ThreadPoolExecutor(WORKERS) as pool:
                states = dict(zip(segment_ids, pool.map(lambda s: self._known_state(account, s, owners), segment_ids)))
            still = []
            for item in waiting:
                state = states[item[2]["segment"]]
                if state == "dead":
                    dead.append(item)
                elif state == "pending":
                    still.append(item)
            if not still:
                return dead
            if time.monotonic() > give_up:
                raise TransientError("a concurrent request is storing the same events; retry the request")
            self.sleep(self.poll_interval)
            waiting = still

    def _known_state(self, account: str, segment_id: str, owners: _Owners) -> str:
        """A segment's state; a final one (committed, dead) is looked up once per request."""
        state = owners.states.get(segment_id)
        if state is None:
            state, _intent = self._owner_state(account, segment_id)
            if state != "pending":
                owners.states[segment_id] = state  # shared by the threads: a racing double lookup is harmless
        return state

    def _take_over(self, dead: list[Contested], segment_id: str):
        """Move dead claims to this segment (ETag-guarded); return (taken, lost to another taker)."""

        def take(item: Contested):
            pk, event, claim = item
            try:
                self.events.update_entity(
                    {"PartitionKey": pk, "RowKey": event.event_id, "segment": segment_id},
                    mode=UpdateMode.REPLACE,
                    etag=claim.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return None
            except (ResourceModifiedError, ServiceRequestError, ServiceResponseError):
                # Someone else took it over first, or our own update landed and its answer was lost
                # (the SDK's retry then meets our new ETag): the claim's segment tells which.
                now = self.events.get_entity(pk, event.event_id)
                return None if now["segment"] == segment_id else now

        with ThreadPoolExecutor(WORKERS) as pool:
            outcome = list(pool.map(take, dead))
        taken = [e for (_pk, e, _c), now in zip(dead, outcome) if now is None]
        lost = [(pk, e, now) for (pk, e, _c), now in zip(dead, outcome) if now is not None]
        return taken, lost

    def _owner_state(self, account: str, segment_id: str) -> tuple[str, Any]:
        """(committed, dead (will never commit) or pending (may still commit), its intent or None)."""
        try:
            intent = self.segments_table.get_entity(account, segment_id)
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
            self._set_intent_state(account, segment_id, "aborted", etag=intent.metadata["etag"])
        except ResourceModifiedError:
            return self._owner_state(account, segment_id)
        return "dead", intent

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
    rows: list[dict[str, str | None]] = []
    for e in ours:
        row: dict[str, str | None] = {
            "event_id": e.event_id,
            "user_id": e.user_id,
            "event_name": e.event_name,
            "timestamp": e.timestamp,
        }
        row.update({param_column(k): v for k, v in e.params.items()})
        row.update({attribute_column(k): v for k, v in attributes.get(e.user_id, {}).items()})
        rows.append(row)
    return encode_segment(rows, param_keys, attribute_keys)
