"""Dedup claims: one entity per event id in `ucdevents`, naming the segment that stores the event.

An event is stored by the segment whose claim on it is in the index. A request claims its events in
transactions of up to 100; a transaction that meets an existing claim rolls back whole. The claim it
names is read: if that claim's segment committed, the segment's blob lists every event it stored
(`Owners.learn`), so all of them are duplicates without a read of their claims, and the rest of the
chunk is claimed in one transaction again. Only claims of segments that are pending or dead are read
one by one (each needs its ETag to be taken over). (One query ORing a chunk's row keys is no way out:
Azure Tables answers it with a scan of the whole partition, and allows 15 comparisons.)

A claim whose write lost its answer is read back: one naming our segment is our own write.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ServiceRequestError, ServiceResponseError
from azure.data.tables import TableClient, TableEntity, TableErrorCode, TableTransactionError, UpdateMode

from ..errors import TransientError
from .owners import Contested, Owners
from .request import EventDraft
from .tables import TRANSACTION_SIZE, WORKERS, get_or_none

# The dedup index is partitioned by account and the first hex digit of the event id: 16 partitions
# per account. Few enough that a request's claims fill 100-entity transactions (one round trip per
# 100 events), enough to spread an account's ingest over several partition servers.
CLAIM_PARTITION_CHARS = 1
CLAIM_PARTITIONS = 16**CLAIM_PARTITION_CHARS


def claim_partition(account: str, event_id: str) -> str:
    """The dedup index partition that holds an event's claim."""
    return f"{account}~{event_id[:CLAIM_PARTITION_CHARS]}"


class Claims:
    """The dedup index of every account."""

    def __init__(self, table: TableClient):
        self.table = table

    def claim(
        self, account: str, events: list[EventDraft], segment_id: str, owners: Owners
    ) -> tuple[list[EventDraft], list[Contested]]:
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
            for won, lost in pool.map(lambda c: self._claim_chunk(c[0], c[1], segment_id, owners), chunks):
                ours.extend(won)
                contested.extend(lost)
        return ours, contested

    def _claim_chunk(
        self, pk: str, chunk: list[EventDraft], segment_id: str, owners: Owners
    ) -> tuple[list[EventDraft], list[Contested]]:
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
                self.table.submit_transaction(
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
                claim = get_or_none(self.table, pk, suspect.event_id)
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
                claim = get_or_none(self.table, pk, suspect.event_id)
            before = len(pending)
            if (
                claim is not None
                and claim["segment"] != segment_id
                and owners.learn(claim["segment"])
                and suspect.event_id in owners.stored
            ):
                pending = owners.unknown(pending)
            else:
                pending = self._judge_each(pk, pending, segment_id, won, lost)
            if len(pending) == before:
                raise TransientError("the dedup index refused claims it does not hold; retry the request")
        return won, lost

    def _judge_each(
        self, pk: str, pending: list[EventDraft], segment_id: str, won: list[EventDraft], lost: list[Contested]
    ) -> list[EventDraft]:
        """Read each claim: ours (a write whose answer was lost), another segment's (contested, with its
        ETag), or none (returned, to be claimed)."""
        free = []
        for e in pending:
            claim = get_or_none(self.table, pk, e.event_id)
            if claim is None:
                free.append(e)
            elif claim["segment"] == segment_id:
                won.append(e)
            else:
                lost.append(Contested(pk, e, claim))
        return free

    def take_over(self, dead: list[Contested], segment_id: str) -> tuple[list[EventDraft], list[Contested]]:
        """Move dead claims to this segment (ETag-guarded); return (taken, lost to another taker)."""

        def take(item: Contested) -> TableEntity | None:
            try:
                self.table.update_entity(
                    {"PartitionKey": item.partition, "RowKey": item.event.event_id, "segment": segment_id},
                    mode=UpdateMode.REPLACE,
                    etag=item.claim.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return None
            except (ResourceModifiedError, ServiceRequestError, ServiceResponseError):
                # Someone else took it over first, or our own update landed and its answer was lost
                # (the SDK's retry then meets our new ETag): the claim's segment tells which.
                now = self.table.get_entity(item.partition, item.event.event_id)
                return None if now["segment"] == segment_id else now

        with ThreadPoolExecutor(WORKERS) as pool:
            outcome = list(pool.map(take, dead))
        taken = [item.event for item, now in zip(dead, outcome) if now is None]
        lost = [Contested(item.partition, item.event, now) for item, now in zip(dead, outcome) if now is not None]
        return taken, lost
