"""A window's working state in the service's own storage, beside its run record: a split window's plan,
each file's (or part's) progress, the staging container's parts and block notes; and forgetting it
once the window is delivered.
"""

from __future__ import annotations

from ..context import Context
from ..export.plan import Selection
from ..export.progress import ProgressRepo, StagedNotes, notes_prefix, staged_prefix
from ..export.resume import keeps_notes
from ..integrations.model import Integration
from ..windows import Window
from .split import RELAY_PART, SplitPlan, SplitRepo
from .staging import StagingArea


def splits(ctx: Context) -> SplitRepo:
    return SplitRepo(ctx.runs.table, ctx.integrations.secrets)


def progress(ctx: Context) -> ProgressRepo:
    return ProgressRepo(ctx.runs.table, ctx.integrations.secrets)


def staging(ctx: Context) -> StagingArea:
    return StagingArea(ctx.storage.staging_container())


def notes(ctx: Context, integration: Integration, window: Window) -> StagedNotes:
    """Where a window's export keeps its block notes (a Parquet file's footer in pieces)."""
    prefix = notes_prefix(integration.account, integration.id, window.start_unix)
    return StagedNotes(ctx.storage.staging_container(), prefix)


def forget_split(ctx: Context, integration: Integration, window: Window, plan: SplitPlan | None) -> None:
    """After the advance (or a lost upload): the plan and its parts' progress are of no further use."""
    if plan is None:
        return
    account, iid, start = integration.account, integration.id, window.start_unix
    for part in [*range(plan.parts), RELAY_PART]:
        progress(ctx).clear(account, iid, start, part)
    splits(ctx).clear(account, iid, start)
    staging(ctx).remove(staged_prefix(account, iid, start))  # a relayed file's parts (GCS); best effort


def forget_notes(ctx: Context, integration: Integration, window: Window, selection: Selection | None) -> None:
    """After the advance: a Parquet file's block notes are of no further use (best effort; the lifecycle rule is the fallback)."""
    if keeps_notes(selection or integration.selection):
        staging(ctx).remove(notes_prefix(integration.account, integration.id, window.start_unix))
