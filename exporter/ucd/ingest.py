"""The UCD upsert protocol: exact (one stored row per event identity) and durable, whatever crashes.

Each step survives a crash of the process at any point:
1. profiles merged and the catalog extended (idempotent merges, `profiles.py`, `catalog.py`);
2. a *segment intent* is written: `pending`, with a deadline (while step 1 runs: nothing names it yet);
3. every event is *claimed* in the dedup index (`ucdevents`, one entity per event_id) for that
   segment; an event already claimed by (or found in the blob of) a committed segment is a duplicate;
   one claimed by a dead segment (aborted, or pending past its deadline with no blob) is taken over
   with an ETag update;
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

The parts, each deciding its own rules: `intents.py` (an intent's states and deadlines, the put, and
whether a segment committed), `claims.py` (the dedup index, its transactions and take-overs),
`owners.py` (what a request learns about the segments holding its events, and waiting on them),
`profiles.py` and `catalog.py`. This module is the order of the steps.

Costs. The intent is written while the profiles merge (no claim names it yet, so a failure or a
refused merge deletes it and leaves nothing); the catalog is not read again for names and keys this
process has seen it hold (it only grows). Claims go in 100-entity transactions; a resend of stored
events costs a few reads per owner segment, not per event (`claims.py`, `owners.py`).
See docs/invariants.md (exactly once, settle) and docs/architecture.md (the UCD).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from azure.storage.blob import ContainerClient

from .. import telemetry
from ..clock import Clock
from ..errors import TransientError
from ..storage import UCD_EVENTS_TABLE, UCD_SEGMENTS_TABLE, Storage
from .catalog import Catalogs
from .claims import Claims
from .intents import Intents, Segment
from .owners import Contested, Owners
from .profiles import Profiles
from .request import EventDraft, UpsertRequest
from .segments import attribute_column, encode_segment, param_column, segment_path, to_ms

# A user's attributes in force, rendered as the segment stores them.
UserAttributes = dict[str, dict[str, str | None]]
# One segment's claim step: claim(segment_id) → (events it claimed, events other segments hold).
ClaimStep = Callable[[str], tuple[list[EventDraft], list[Contested]]]


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


class Ingest:
    """Upserts: profiles and catalog first, then the events through intents, claims and one segment put."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        profiles: Profiles,
        catalogs: Catalogs,
        container: ContainerClient,
        *,
        commit_timeout_seconds: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        fault: Callable[[str], None] = no_fault,
    ):
        self.clock = clock
        self.profiles = profiles
        self.catalogs = catalogs
        self.container = container
        self.intents = Intents(
            storage.table(UCD_SEGMENTS_TABLE),
            container,
            clock,
            commit_timeout=commit_timeout_seconds or storage.settings.ucd_commit_timeout_seconds,
            sleep=sleep,
        )
        self.claims = Claims(storage.table(UCD_EVENTS_TABLE))
        self.sleep = sleep
        self.fault = fault  # tests inject a crash between any two storage writes
        self.poll_interval = 0.25

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
            self.catalogs.extend(account, request.users)
            self.fault("after_catalog")
            return UpsertResult(request.received_events, 0, request.received_events)

        first = Segment(uuid.uuid4().hex)
        attributes = self._prepare(request, first, len(unique))
        owners = Owners(account, frozenset(unique), self.intents, self.container)
        events = list(unique.values())
        stored, contested = self._store_segment(
            account, first, lambda sid: self.claims.claim(account, events, sid, owners), attributes
        )
        # Only now, holding no pending claim, wait for the events other requests hold. A request never
        # waits while others may wait on it, so overlapping concurrent upserts cannot deadlock.
        while contested:
            dead = owners.await_dead(contested, self.intents.commit_timeout, self.poll_interval, self.sleep)
            if not dead:
                break
            taken, contested = self._store_segment(
                account,
                Segment(uuid.uuid4().hex),
                functools.partial(self.claims.take_over, dead),
                attributes,
                events=len(dead),
            )
            stored += taken
        result = UpsertResult(request.received_events, stored, request.received_events - stored)
        telemetry.record_upsert(account, result.received_events, result.stored_events, result.duplicate_events)
        return result

    def _prepare(self, request: UpsertRequest, segment: Segment, events: int) -> UserAttributes:
        """Merge the profiles and extend the catalog while the first segment's intent is written.

        No claim names the intent before this returns, so if the merge is refused (bad input) or fails,
        the intent is deleted and nothing of the request stays; after a crash it is a pending intent
        that nothing refers to.
        """
        account = request.account
        with ThreadPoolExecutor(1) as side:
            created = side.submit(self.intents.create, account, segment.id, events)
            try:
                attributes = self.profiles.merge(account, request.users)
                self.fault("after_profiles")
                self.catalogs.extend(account, request.users)
                self.fault("after_catalog")
            except Exception:  # re-raised; a crash (BaseException) leaves the claimless intent
                self.intents.drop(account, segment.id, created)
                raise
            segment.intent, segment.etag = created.result()
        return attributes

    def _store_segment(
        self, account: str, segment: Segment, claim: ClaimStep, attributes: UserAttributes, events: int = 0
    ) -> tuple[int, list[Contested]]:
        """One segment: intent (unless written already), claims, commit; return (stored, contested).

        If the request fails before its put can have started, the intent is aborted at once, so the
        claims it holds are free for the request's retry instead of blocking it until their deadline.
        """
        try:
            if segment.intent is None:
                segment.intent, segment.etag = self.intents.create(account, segment.id, events)
            self.fault("after_intent")
            ours, contested = claim(segment.id)
            self.fault("after_claims")
            if ours:
                self._commit_segment(account, segment, ours, attributes)
            else:
                self.intents.set_state(account, segment.id, "aborted")
        except Exception:
            self.intents.abort(account, segment)
            raise
        return len(ours), contested

    def _commit_segment(
        self, account: str, segment: Segment, ours: list[EventDraft], attributes: UserAttributes
    ) -> None:
        """Stamp the entry time, put the blob, mark the intent committed; a put that did not land is restamped."""
        data = _encode(ours, attributes)
        last_error = None
        for _attempt in range(3):
            entry_ms = to_ms(self.clock.now())
            path = segment_path(account, entry_ms, segment.id)
            self.intents.stamp(account, segment, path, entry_ms)
            self.fault("after_stamp")
            last_error = self.intents.put(segment, path, data)
            if last_error is None:
                self.fault("after_upload")
                self.intents.mark_committed(account, segment.id)
                self.fault("after_commit_mark")
                return
        self.intents.set_state(account, segment.id, "aborted")
        raise TransientError(
            f"the event store could not commit a segment ({type(last_error).__name__}); retry the request"
        )


def _encode(ours: list[EventDraft], attributes: UserAttributes) -> bytes:
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
