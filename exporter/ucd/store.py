"""The UCD store: exact (one stored row per event identity), durable, and read by entry-time window.

Upsert protocol (each step survives a crash of the process at any point):
1. profiles merged and the catalog extended (idempotent merges);
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
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableTransactionError, UpdateMode
from azure.core import MatchConditions

from .. import telemetry
from ..clock import Clock, iso
from ..errors import InputError, NotFoundError, TransientError
from ..storage import (
    UCD_CATALOG_TABLE,
    UCD_EVENTS_TABLE,
    UCD_PROFILES_TABLE,
    UCD_SEGMENTS_TABLE,
    Storage,
)
from ..validation import check_account, check_name
from .request import MAX_PROFILE_CHARS, EventDraft, UpsertRequest, UserDraft
from .segments import (
    FIXED_COLUMNS,
    SegmentRef,
    attribute_column,
    encode_segment,
    hour_prefix,
    hours_covering,
    param_column,
    parse_segment_name,
    segment_path,
)
from .values import render

log = logging.getLogger(__name__)

TRANSACTION_SIZE = 100
# The dedup index is partitioned by account and the first hex digit of the event id: 16 partitions
# per account. Few enough that a request's claims fill 100-entity transactions (one round trip per
# 100 events), enough to spread an account's ingest over several partition servers.
CLAIM_PARTITION_CHARS = 1
WORKERS = 8
READ_PREFETCH = 3  # segments downloaded and decoded ahead of the one being consumed
DOWNLOAD_CONCURRENCY = 2  # connections per segment download
LIST_CONCURRENCY = 4  # hour prefixes listed at once


def claim_partition(account: str, event_id: str) -> str:
    return f"{account}~{event_id[:CLAIM_PARTITION_CHARS]}"


def _ms(when: datetime) -> int:
    return int(round(when.timestamp() * 1000))


def _key(text: str) -> str:
    """Table keys may not hold / \\ # ? or control characters; percent-encode them."""
    return quote(text, safe="")


@dataclass(frozen=True)
class UpsertResult:
    received_events: int
    stored_events: int
    duplicate_events: int

    def to_json(self) -> dict[str, int]:
        return {
            "received_events": self.received_events,
            "stored_events": self.stored_events,
            "duplicate_events": self.duplicate_events,
        }


def _no_fault(point: str) -> None:
    return None


@dataclass
class _Segment:
    """One segment being stored: its intent as last read, and whether a put of it may still land."""

    id: str
    intent: Any = None
    put_pending: bool = False


class UcdStore:
    """Stored events, profiles and catalog of every account, on the app's storage account."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        commit_timeout_seconds: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fault: Callable[[str], None] = _no_fault,
    ):
        self.storage = storage
        self.clock = clock
        self.commit_timeout = commit_timeout_seconds or storage.settings.ucd_commit_timeout_seconds
        # Before it is stamped an intent may take a while to claim a large request's events.
        self.claim_budget = max(60, 3 * self.commit_timeout)
        self.sleep = sleep
        self.fault = fault  # tests inject a crash between any two storage writes
        self.poll_interval = 0.25
        self.events = storage.table(UCD_EVENTS_TABLE)
        self.segments_table = storage.table(UCD_SEGMENTS_TABLE)
        self.profiles = storage.table(UCD_PROFILES_TABLE)
        self.catalog_table = storage.table(UCD_CATALOG_TABLE)
        self.container = storage.ucd_container()

    # ---------------------------------------------------------------- upsert

    def upsert(self, request: UpsertRequest) -> UpsertResult:
        """Store the request's events once each; profiles merged, catalog extended."""
        account = request.account
        unique: dict[str, EventDraft] = {}
        for user in request.users:
            for event in user.events:
                unique.setdefault(event.event_id, event)
        attributes = self._merge_profiles(account, request.users)
        self.fault("after_profiles")
        self._extend_catalog(account, request.users)
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
        param_keys = {k for e in ours for k in e.params}
        attribute_keys = {k for e in ours for k in attributes.get(e.user_id, {})}
        rows = []
        for e in ours:
            row = {"event_id": e.event_id, "user_id": e.user_id, "event_name": e.event_name, "timestamp": e.timestamp}
            row.update({param_column(k): v for k, v in e.params.items()})
            row.update({attribute_column(k): v for k, v in attributes.get(e.user_id, {}).items()})
            rows.append(row)
        data = encode_segment(rows, param_keys, attribute_keys)
        last_error: Exception | None = None
        for _attempt in range(3):
            entry = self.clock.now()
            entry_ms = _ms(entry)
            path = segment_path(account, entry_ms, segment.id)
            segment.intent = self._stamp_intent(account, segment.id, segment.intent, path, entry_ms)
            self.fault("after_stamp")
            started = time.monotonic()
            segment.put_pending = True
            try:
                # One attempt only (retry_total=0): an SDK retry after its back-off would land the put
                # after the deadline, with the old entry time, perhaps after another request took over.
                self.container.upload_blob(path, data, overwrite=False, timeout=self.commit_timeout, retry_total=0)
            except ResourceExistsError:
                pass  # a previous attempt's put did land
            except AzureError as exc:
                last_error = exc
                # A failed put may still be running on the server until its server-side timeout; only
                # after that is "no blob" final, and a restamped put cannot race the old one.
                self.sleep(max(0.0, started + self.commit_timeout - time.monotonic()))
                if not self._blob_exists(path):  # raises when storage cannot say: then no second put
                    segment.put_pending = False
                    continue  # restamp and retry: the row must not carry an entry time older than its commit
            self.fault("after_upload")
            self._mark_committed(account, segment.id)
            self.fault("after_commit_mark")
            return
        self._set_intent_state(account, segment.id, "aborted")
        raise TransientError(f"the event store could not commit a segment ({type(last_error).__name__}); retry the request")

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
        now_ms = _ms(self.clock.now())
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
                if _get(self.segments_table, account, segment_id) is not None or attempt == 2:
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
                claim = _get(self.events, pk, event_id)
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
        if _ms(self.clock.now()) <= int(intent["deadline_ms"]):
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

    # ---------------------------------------------------------------- profiles and catalog

    def _merge_profiles(self, account: str, users: list[UserDraft]) -> dict[str, dict[str, str | None]]:
        """Merge each user's attributes into the profile; return the rendered attributes in force per user.

        All profiles are read and every merge is checked first, so a merge that would be too large
        refuses the request before any profile is written (I8); the writes then start from those reads.
        """
        merged: dict[str, UserDraft] = {}
        where: dict[str, str] = {}
        for i, user in enumerate(users):
            into = merged.setdefault(user.user_id, UserDraft(user.user_id))
            into.identifiers.update(user.identifiers)
            into.attributes.update(user.attributes)
            where.setdefault(user.user_id, f"users[{i}]")
        drafts = list(merged.values())
        with ThreadPoolExecutor(WORKERS) as pool:
            currents = list(pool.map(lambda u: _get(self.profiles, account, _key(u.user_id)), drafts))
            for user, current in zip(drafts, currents):
                self._profile_merge(account, user, where[user.user_id])(current)  # raises if too large
            results = list(pool.map(
                lambda pair: (pair[0].user_id, self._merge_profile(account, pair[0], where[pair[0].user_id], pair[1])),
                zip(drafts, currents),
            ))
        return {user_id: {k: render(v) for k, v in attrs.items()} for user_id, attrs in results}

    def _profile_merge(self, account: str, user: UserDraft, where: str) -> Callable[[Any], tuple[dict | None, Any]]:
        """The change that merges `user` into a stored profile (for `_read_modify_write`)."""
        def merge(current):
            fresh = current is None or current.get("deleted", False)
            attributes = {} if fresh else json.loads(current.get("attributes", "{}"))
            identifiers = {} if fresh else json.loads(current.get("identifiers", "{}"))
            new_attributes = {**attributes, **user.attributes}
            new_identifiers = {**identifiers, **user.identifiers}
            if not fresh and new_attributes == attributes and new_identifiers == identifiers:
                return None, attributes
            entity = {
                "PartitionKey": account,
                "RowKey": _key(user.user_id),
                "user_id": user.user_id,
                "attributes": json.dumps(new_attributes, separators=(",", ":"), ensure_ascii=False),
                "identifiers": json.dumps(new_identifiers, separators=(",", ":"), ensure_ascii=False),
                "deleted": False,
                "updated_at": iso(self.clock.now()),
            }
            for part in ("attributes", "identifiers"):
                if len(entity[part]) > MAX_PROFILE_CHARS:
                    raise InputError(f"merged with the stored profile it exceeds {MAX_PROFILE_CHARS} characters", field=f"{where}.{part}")
            return entity, new_attributes

        return merge

    def _merge_profile(self, account: str, user: UserDraft, where: str, current: Any) -> dict[str, Any]:
        return _read_modify_write(self.profiles, account, _key(user.user_id), self._profile_merge(account, user, where),
                                  f"profile of user {user.user_id!r}", current=current)

    def delete_user(self, account: str, user_id: str) -> dict[str, Any]:
        """Tombstone a profile; events already stored stay and are still exported."""
        check_account(account)
        check_name(user_id, "user_id")
        try:
            current = self.profiles.get_entity(account, _key(user_id))
        except ResourceNotFoundError:
            raise NotFoundError(f"user {user_id!r} not found in account {account!r}", field="user_id") from None
        self.profiles.update_entity(
            {"PartitionKey": account, "RowKey": _key(user_id), "deleted": True, "deleted_at": iso(self.clock.now())},
            mode=UpdateMode.MERGE, etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified,
        )
        return {"account": account, "user_id": user_id, "deleted": True}

    def profile(self, account: str, user_id: str) -> dict[str, Any] | None:
        try:
            entity = self.profiles.get_entity(account, _key(user_id))
        except ResourceNotFoundError:
            return None
        return {
            "user_id": entity["user_id"],
            "attributes": json.loads(entity.get("attributes", "{}")),
            "identifiers": json.loads(entity.get("identifiers", "{}")),
            "deleted": entity.get("deleted", False),
        }

    def _extend_catalog(self, account: str, users: list[UserDraft]) -> None:
        params: dict[str, set[str]] = defaultdict(set)
        attribute_keys: set[str] = set()
        for user in users:
            attribute_keys.update(user.attributes)
            for e in user.events:
                params[e.event_name].update(e.params)
        wanted = {f"event~{_key(name)}": (name, keys) for name, keys in params.items()}
        wanted["attributes"] = ("", attribute_keys)
        for row_key, (name, keys) in wanted.items():
            self._extend_catalog_entry(account, row_key, name, keys)

    def _extend_catalog_entry(self, account: str, row_key: str, name: str, keys: set[str]) -> None:
        def extend(current):
            known = set(json.loads(current["keys"])) if current else set()
            if current is not None and keys <= known:
                return None, None
            return {"PartitionKey": account, "RowKey": row_key, "name": name, "keys": json.dumps(sorted(known | keys))}, None

        _read_modify_write(self.catalog_table, account, row_key, extend, "the catalog")

    def catalog(self, account: str) -> dict[str, Any]:
        """Event names with their parameter keys, and attribute keys, seen for an account."""
        check_account(account)
        events: dict[str, list[str]] = {}
        attributes: list[str] = []
        for entity in self.catalog_table.query_entities("PartitionKey eq @pk", parameters={"pk": account}):
            if entity["RowKey"] == "attributes":
                attributes = json.loads(entity["keys"])
            else:
                events[entity["name"]] = json.loads(entity["keys"])
        return {"account": account, "events": dict(sorted(events.items())), "attributes": attributes}

    # ---------------------------------------------------------------- reading windows

    def segments(self, account: str, start: datetime, end: datetime) -> list[SegmentRef]:
        """The committed segments whose entry time is in [start, end), in read order."""
        return list(self._iter_segments(account, start, end))

    def _iter_segments(self, account: str, start: datetime, end: datetime) -> Iterator[SegmentRef]:
        """`segments`, hour by hour, so reading can start before the last hour is listed.

        Hours are disjoint and ascending, so sorting within each hour gives the same order as one sort.
        """
        start_ms, end_ms = _ms(start), _ms(end)

        def list_hour(hour: datetime) -> list[SegmentRef]:
            refs = []
            for blob in self.container.list_blobs(name_starts_with=hour_prefix(account, hour)):
                ref = parse_segment_name(blob.name)
                if ref is not None and start_ms <= ref.entry_ms < end_ms:
                    refs.append(ref)
            return sorted(refs)

        hours = list(hours_covering(start, end))
        if len(hours) == 1:
            yield from list_hour(hours[0])
            return
        # The hours are listed side by side (a listing is a round trip or more each), consumed in order.
        with ThreadPoolExecutor(min(LIST_CONCURRENCY, len(hours))) as pool:
            for refs in pool.map(list_hour, hours):
                yield from refs

    def read_window(
        self,
        account: str,
        start: datetime,
        end: datetime,
        *,
        event_names: Iterable[str] | None = None,
        columns: Iterable[str] = (),
        batch_rows: int = 65_536,
        prefetch: int = READ_PREFETCH,
    ) -> Iterator[pa.RecordBatch]:
        """Stored events with entry time in [start, end) as Arrow batches, in entry-time order.

        `columns` are segment columns beyond the fixed four (`p:<key>`, `a:<key>`); every batch has
        exactly the fixed columns plus these, missing ones null. Memory: a few segments, never the window.
        """
        names = list(FIXED_COLUMNS) + [c for c in columns if c not in FIXED_COLUMNS]
        schema = pa.schema([(n, pa.string()) for n in names])
        wanted = pa.array(sorted(set(event_names)), pa.string()) if event_names is not None else None
        # Each worker downloads and decodes one segment (Arrow releases the GIL), so decoding overlaps
        # the caller's CSV encoding; at most `prefetch` decoded segments are held at once.
        def load(ref: SegmentRef) -> list[pa.RecordBatch]:
            return list(_conform(self._download(ref.path), schema, wanted, batch_rows))

        with ThreadPoolExecutor(max(1, prefetch)) as pool:
            pending: deque = deque()
            queue = self._iter_segments(account, start, end)
            for ref in queue:
                pending.append(pool.submit(load, ref))
                if len(pending) >= prefetch:
                    break
            while pending:
                batches = pending.popleft().result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append(pool.submit(load, nxt))
                yield from batches
                del batches

    def _download(self, path: str) -> bytes:
        return self.container.download_blob(path, max_concurrency=DOWNLOAD_CONCURRENCY).readall()


_UNREAD = object()


def _get(table, partition: str, row: str) -> Any:
    try:
        return table.get_entity(partition, row)
    except ResourceNotFoundError:
        return None


def _read_modify_write(table, partition: str, row: str, change: Callable[[Any], tuple[dict | None, Any]], what: str,
                       current: Any = _UNREAD) -> Any:
    """Optimistic concurrency on one entity: `change(current or None)` gives (entity to write or None, result);
    a concurrent writer makes it read and change again. `current` may pass in a read already made."""
    for _ in range(10):
        if current is _UNREAD:
            current = _get(table, partition, row)
        entity, result = change(current)
        if entity is None:
            return result
        try:
            if current is None:
                table.create_entity(entity)
            else:
                table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
                )
            return result
        except (ResourceExistsError, ResourceModifiedError):
            current = _UNREAD
    raise TransientError(f"{what} is being changed concurrently; retry")


def _conform(data: bytes, schema: pa.Schema, wanted: pa.Array | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(pa.BufferReader(data))
    present = set(parquet.schema_arrow.names)
    read = [n for n in schema.names if n in present]
    # One thread per segment: the read_window workers already decode segments side by side.
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=read, use_threads=False):
        if wanted is not None:
            batch = batch.filter(pc.is_in(batch.column("event_name"), value_set=wanted))
        if batch.num_rows == 0:
            continue
        arrays = [
            batch.column(n) if n in present else pa.nulls(batch.num_rows, pa.string())
            for n in schema.names
        ]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
