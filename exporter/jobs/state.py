"""The worker's conditional writes to an integration's delivery state, through the one retry loop.

A lost race re-reads and tries again (exporter.concurrency.retry_on_conflict). A write whose answer
was lost meets its own ETag on the SDK's retry; the re-read then shows our own change, recognised
as done rather than as somebody else's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..concurrency import retry_on_conflict
from ..context import Context
from ..errors import NotFoundError, StaleRecordError
from ..history import SYSTEM
from ..integrations.model import Integration


def reread(ctx: Context, stale: Integration) -> Integration:
    """The integration as stored now."""
    return ctx.repo.get(stale.account, stale.id)


def conditionally(ctx: Context, integration: Integration, attempt: Callable[[Integration], Any]) -> Any:
    """`attempt(current)` until it is not refused for a stale ETag (a bounded number of times)."""
    return retry_on_conflict(
        integration,
        attempt,
        lambda stale: reread(ctx, stale),
        conflicts=(StaleRecordError,),
        what=f"integration {integration.id!r}",
    )


def modify(
    ctx: Context, integration: Integration, *, unless: Callable[[Integration], bool] | None = None, **changes: Any
) -> Integration | None:
    """Apply worker-owned changes; None if the integration is gone or `unless(current)` holds."""

    def attempt(current: Integration) -> Integration | None:
        if unless is not None and unless(current):
            return None
        if all(getattr(current, name) == value for name, value in changes.items()):
            return current  # already so: our own write whose answer was lost, or nothing to do
        changed = current.with_changes(**changes)
        with ctx.integrations.recorded(current, changed, who=SYSTEM):  # a status it stops: in the history
            return ctx.repo.replace(changed)

    try:
        return conditionally(ctx, integration, attempt)
    except NotFoundError:
        return None  # deleted meanwhile: nothing left to change
