"""Split windows: a window whose stored segments exceed `EXPORT_SPLIT_BYTES` is exported in parts, by
several workers at once, and committed once, in order (docs/architecture.md, "Windows of any size").

A part is a run of whole segments (the window's segment list is fixed once it is due), so the parts'
bytes, concatenated in order, are the bytes of a one-worker export: only the first part writes the
header. The plan (the file, each part's first segment, the destination's upload) is one Table entity
per window, in the runs table; each part's progress is a `WindowProgress` of its own (resumable like a
whole window); the commit is claimed by an ETag-conditional write, so it happens once. A GCS file's
commit is a relay of its parts (exporter/destinations/gcs_relay.py) that may take several invocations: its claim
is given up between them and claimed again by the follow-up.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode

from ..clock import iso, parse_instant
from ..export.destination import MAX_PARTS, UploadState
from ..export.formats import file_format
from ..secrets import SecretBox
from ..ucd.segments import SegmentRef

RELAY_PART = (
    999  # the progress row of a relayed file (exporter/destinations/gcs_relay.py): after every part's (< MAX_PARTS)
)


@dataclass(frozen=True)
class SplitPlan:
    """One split window: its file, the first segment of each part, and the upload the parts share."""

    path: str
    firsts: tuple[str, ...]  # part p reads the segments from firsts[p] up to firsts[p + 1]
    upload: UploadState = UploadState()

    @property
    def parts(self) -> int:
        return len(self.firsts)

    def until(self, part: int) -> str | None:
        """The segment part `part` ends before (None: the window's end)."""
        return self.firsts[part + 1] if part + 1 < self.parts else None


def plan_parts(segments: list[SegmentRef], split_bytes: int, fmt: str = "csv") -> tuple[str, ...]:
    """Each part's first segment: runs of whole segments of about equal size; () when one part is enough.

    A part begins only where the format lets one (`FileFormat.part_starts`: a gzip format's where a gzip
    member begins, from the same sizes), so each part writes the members of a one-go export: a window
    with fewer such segments than the parts asked for gets fewer parts, and one without any is exported
    whole (still resumable).
    """
    total = sum(ref.size for ref in segments)
    starts = file_format(fmt).part_starts(segments)  # the segments a part may start at (never 0)
    count = min(MAX_PARTS, len(starts) + 1, math.ceil(total / split_bytes) if split_bytes else 1)
    if count < 2:
        return ()
    done = [0, *accumulate(ref.size for ref in segments)]  # done[i]: bytes of the segments before segment i
    cuts: list[int] = []  # the segments parts 1, 2, ... start at
    for k in range(1, count):
        goal = total * k / count
        cut = min(starts, key=lambda i: abs(done[i] - goal))
        if not cuts or cut > cuts[-1]:
            cuts.append(cut)
    return tuple([segments[0].path] + [segments[c].path for c in cuts])


class SplitRepo:
    """Split plans, in their own partition of the runs table (the run history never sees them)."""

    def __init__(self, table: TableClient, box: SecretBox):
        self.table = table
        self.box = box

    def get(self, account: str, integration_id: str, window_start: int) -> SplitPlan | None:
        entity = self._entity(account, integration_id, window_start)
        return self._plan(entity) if entity is not None else None

    def create(self, account: str, integration_id: str, window_start: int, plan: SplitPlan) -> SplitPlan:
        """Store the plan; if another worker planned this window first, theirs is the plan."""
        entity = {
            "PartitionKey": _partition(account, integration_id),
            "RowKey": _row(window_start),
            "path": plan.path,
            "firsts": json.dumps(list(plan.firsts)),
            "handle": self.box.seal(plan.upload.handle) if plan.upload.handle else "",
            "committer": "",
            "claimed_at": "",
        }
        try:
            self.table.create_entity(entity)
        except ResourceExistsError:
            existing = self.get(account, integration_id, window_start)
            if existing is not None:
                return existing
            raise
        return plan

    def claim_commit(
        self, account: str, integration_id: str, window_start: int, now: datetime, lease: int
    ) -> str | None:
        """Become the one worker that commits the file: its claim for exactly one claimant, else None.

        A claim lapses after `lease` seconds, so a dead committer is replaced.
        """
        entity = self._entity(account, integration_id, window_start)
        if entity is None:
            return None
        claimed = entity.get("claimed_at")
        if claimed and parse_instant(claimed, "claimed_at") + timedelta(seconds=lease) > now:
            return None
        entity["committer"], entity["claimed_at"] = uuid.uuid4().hex, iso(now)
        if not self._replace(entity):
            return None  # another worker claimed it (or committed and cleared it) first
        return str(entity["committer"])

    def release_commit(self, account: str, integration_id: str, window_start: int, claim: str) -> None:
        """Give up our claim (a relay continued in a follow-up, or failed): the next worker claims at once."""
        entity = self._entity(account, integration_id, window_start)
        if entity is not None and entity.get("committer") == claim:
            entity["committer"], entity["claimed_at"] = "", ""
            self._replace(entity)  # lost to a newer claim: that one stands

    def _replace(self, entity: TableEntity) -> bool:
        try:
            self.table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def clear(self, account: str, integration_id: str, window_start: int) -> None:
        try:
            self.table.delete_entity(_partition(account, integration_id), _row(window_start))
        except ResourceNotFoundError:
            pass

    def _entity(self, account: str, integration_id: str, window_start: int) -> TableEntity | None:
        try:
            return self.table.get_entity(_partition(account, integration_id), _row(window_start))
        except ResourceNotFoundError:
            return None

    def _plan(self, entity: TableEntity) -> SplitPlan:
        handle = self.box.open(entity["handle"]) if entity.get("handle") else ""
        return SplitPlan(entity["path"], tuple(json.loads(entity["firsts"])), UploadState(handle))


def _partition(account: str, integration_id: str) -> str:
    return f"{account}~{integration_id}~split"


def _row(window_start: int) -> str:
    return f"{window_start:012d}"
