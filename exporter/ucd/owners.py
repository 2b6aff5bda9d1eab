"""Owner segments: the segments holding claims on a request's events, as one request learns them.

A claim another segment holds is *contested*. Its owner either committed (the event is a duplicate),
is dead (its claim may be taken over), or is pending (wait for it). Each owner is looked up once per
request and segment, not per event: a committed owner's blob lists every event it stored, so one read
of its `event_id` column answers for all of the request's events it holds (within a budget, so a
request does not read far more than it sends); a pending owner is polled once per segment until it
commits or dies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
from azure.core.exceptions import AzureError
from azure.data.tables import TableEntity
from azure.storage.blob import ContainerClient

from ..errors import TransientError
from .intents import Intents, OwnerState
from .request import EventDraft
from .segments import segment_column
from .tables import WORKERS

# Events of committed owner segments a request may read from their blobs to recognise its duplicates:
# a resend reads about as many as it sends; beyond this it reads the claims one by one.
OWNER_READ_FACTOR = 2
OWNER_READ_EXTRA = 10_000


@dataclass(frozen=True)
class Contested:
    """An event of the request whose claim another segment holds, with the claim as read (and its ETag)."""

    partition: str  # the dedup index partition of its claim
    event: EventDraft
    claim: TableEntity

    @property
    def owner(self) -> str:
        return self.claim["segment"]


@dataclass
class Owners:
    """What one request learns about the segments holding claims on its events; shared by its threads.

    A segment's final state (committed or dead) is looked up once. A committed segment's event ids are
    read once from its blob (within `budget` events): the request's events found there are duplicates
    (`stored`), known without reading their claims.
    """

    account: str
    wanted: frozenset[str]  # the event ids of the request
    intents: Intents
    container: ContainerClient
    budget: int = field(init=False)
    stored: frozenset[str] = frozenset()
    states: dict[str, OwnerState] = field(default_factory=dict)
    learning: dict[str, Future[bool]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.budget = OWNER_READ_FACTOR * len(self.wanted) + OWNER_READ_EXTRA

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

    def learn(self, segment_id: str) -> bool:
        """Whether another segment committed and its events are now in `stored` (once per segment)."""
        with self.lock:
            future = self.learning.get(segment_id)
            mine = future is None
            if future is None:
                future = self.learning[segment_id] = Future()
        if not mine:
            return future.result()
        try:
            known = self._read_owner(segment_id)
        except BaseException as exc:  # handed to the threads waiting on this segment, and re-raised
            future.set_exception(exc)
            raise
        future.set_result(known)
        return known

    def _read_owner(self, segment_id: str) -> bool:
        state, intent = self.intents.state(self.account, segment_id)
        if state != "pending":
            self.states[segment_id] = state
        if state != "committed" or intent is None:
            return False
        with self.lock:
            events = int(intent.get("events") or 0)
            if events > self.budget:
                return False  # a large segment holding few of ours: their claims are read instead
            self.budget -= events
        try:
            data = self.container.download_blob(intent["path"]).readall()
            ids = segment_column(data, "event_id")
        except (AzureError, pa.ArrowException, ValueError):
            return False  # the claims will tell, one read each
        found = self.wanted.intersection(ids)
        with self.lock:
            self.stored = self.stored | found
        return True

    def await_dead(
        self, contested: list[Contested], give_up_after: float, poll_interval: float, sleep: Callable[[float], None]
    ) -> list[Contested]:
        """Wait until the owner of each contested event has committed or died; return the dead ones' claims.

        Owners are looked up once per segment and poll, not per event. A pending owner's claims cannot
        move (only a dead owner's are taken over), and if one was taken over meanwhile, its ETag
        tells at the take-over.
        """
        give_up = time.monotonic() + give_up_after
        dead: list[Contested] = []
        waiting = contested
        while True:
            segment_ids = sorted({item.owner for item in waiting})
            with ThreadPoolExecutor(WORKERS) as pool:
                states = dict(zip(segment_ids, pool.map(self._known_state, segment_ids)))
            still = []
            for item in waiting:
                state = states[item.owner]
                if state == "dead":
                    dead.append(item)
                elif state == "pending":
                    still.append(item)
            if not still:
                return dead
            if time.monotonic() > give_up:
                raise TransientError("a concurrent request is storing the same events; retry the request")
            sleep(poll_interval)
            waiting = still

    def _known_state(self, segment_id: str) -> OwnerState:
        """A segment's state; a final one (committed, dead) is looked up once per request."""
        state = self.states.get(segment_id)
        if state is None:
            state, _intent = self.intents.state(self.account, segment_id)
            if state != "pending":
                self.states[segment_id] = state  # shared by the threads: a racing double lookup is harmless
        return state
