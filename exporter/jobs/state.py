"""The worker's changes to an integration's delivery state (advance, stop, release, follow-up), each a
conditional write through the one retry loop.

A lost race re-reads and tries again (exporter.concurrency.retry_on_conflict). A write whose answer
was lost meets its own ETag on the SDK's retry; the re-read then shows our own change, recognised
as done rather than as somebody else's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from .. import telemetry
from ..concurrency import retry_on_conflict
from ..context import Context
from ..errors import CredentialError, DestinationError, NotFoundError, StaleRecordError
from ..history import SYSTEM
from ..integrations.model import Integration, Status
from ..notifications import outbox
from ..windows import Window, is_due, next_start
from .messages import FOLLOW_UP, ExportJob

log = logging.getLogger(__name__)

Answer = TypeVar("Answer")


def reread(ctx: Context, stale: Integration) -> Integration:
    """The integration as stored now."""
    return ctx.repo.get(stale.account, stale.id)


def conditionally(ctx: Context, integration: Integration, attempt: Callable[[Integration], Answer]) -> Answer:
    """`attempt(current)` until it is not refused for a stale ETag (a bounded number of times)."""
    return retry_on_conflict(
        integration,
        attempt,
        lambda stale: reread(ctx, stale),
        conflicts=(StaleRecordError,),
        what=f"integration {integration.id!r}",
    )


Tell = Callable[[Integration, Integration], Sequence[outbox.Pending]]  # (current, changed): the events it tells


def modify(
    ctx: Context,
    integration: Integration,
    *,
    unless: Callable[[Integration], bool] | None = None,
    tell: Tell | None = None,
    **changes: object,
) -> Integration | None:
    """Apply worker-owned changes; None if the integration is gone or `unless(current)` holds.

    `tell`: the events the change tells, written with it (the outbox) and queued once it landed.
    """
    told: list[outbox.Pending] = []

    def attempt(current: Integration) -> Integration | None:
        if unless is not None and unless(current):
            return None
        if all(getattr(current, name) == value for name, value in changes.items()):
            return current  # already so: our own write whose answer was lost, or nothing to do
        changed = current.with_changes(**changes)
        told[:] = tell(current, changed) if tell else ()
        with ctx.integrations.recorded(current, changed, who=SYSTEM):  # a status it stops: in the history
            return ctx.repo.replace(changed, along=[row.to_entity() for row in told])

    try:
        written = conditionally(ctx, integration, attempt)
    except NotFoundError:
        return None  # deleted meanwhile: nothing left to change
    if written is not None:
        outbox.send(ctx, told)  # the rows landed with the write (also when only its answer was lost)
    return written


def advance(
    ctx: Context,
    integration: Integration,
    window: Window,
    tell: Callable[[Integration], Sequence[outbox.Pending]] | None = None,
) -> Integration | None:
    """Move last_success_end from window.start to window.end, conditionally (docs/invariants.md: state).

    If no window is due after it, the same write frees the integration for the scheduler (its lease),
    as handing the job on would right after. None if the integration moved elsewhere meanwhile (a
    frequency change, say): nothing to advance. `tell(advanced)`: the window's delivery to tell, written
    with the advance (the outbox) and queued once it landed.
    """
    told: list[outbox.Pending] = []

    def attempt(current: Integration) -> Integration | None:
        if current.last_success_end and current.last_success_end >= window.end:
            return current  # delivered: by another worker (same name, same bytes), or our own lost answer
        if current.activated_at is None or next_start(current.activated_at, current.last_success_end) != window.start:
            return None
        done = not is_due(
            current.activated_at, window.end, current.frequency_hours, ctx.clock.now(), ctx.settings.settle_seconds
        )
        # The scheduler's lease lives on the due entry until this first write moves it: carried on here.
        running = ctx.clock.now() + timedelta(seconds=ctx.settings.lease_seconds)
        lease = None if done else (current.queued_until or running)
        changed = current.with_changes(last_success_end=window.end, last_error=None, queued_until=lease)
        told[:] = tell(changed) if tell else ()
        return ctx.repo.replace(changed, along=[row.to_entity() for row in told])

    advanced = conditionally(ctx, integration, attempt)
    if advanced is not None:
        outbox.send(ctx, told)  # the rows landed with the advance (also when only its answer was lost)
    return advanced


def stop(ctx: Context, integration: Integration, error: CredentialError | DestinationError) -> None:
    """A credential or destination error stops delivery at once (docs/invariants.md: credential errors).

    Unless the customer replaced the destination meanwhile: the error was about the old credentials.
    """
    status = Status.CREDENTIAL_ERROR if isinstance(error, CredentialError) else Status.DESTINATION_ERROR
    stopped = modify(
        ctx,
        integration,
        unless=lambda fresh: fresh.destination != integration.destination,
        tell=lambda current, changed: outbox.stopped(current, changed, error.message, ctx.clock.now()),
        status=status,
        last_error=error.message,
        queued_until=None,
        updated_at=ctx.clock.now(),
    )
    if stopped is None:
        return
    if isinstance(error, CredentialError):
        telemetry.record_credential_error(integration.account, integration.id, integration.destination.type)
    log.error(
        "integration stopped",
        extra={
            "account": integration.account,
            "integration_id": integration.id,
            "status": status,
            "reason": error.message,
        },
    )


def release(ctx: Context, integration: Integration) -> None:
    """Free the integration for the scheduler (its lease) at once."""
    if integration.queued_until is not None:
        modify(ctx, integration, queued_until=None)


def follow_up(ctx: Context, integration: Integration, leased: Callable[[], Integration | None] | None = None) -> None:
    """A long catch-up continues in a new message, so no invocation nears the Functions timeout.

    `leased()`: the lease as already taken (while a window's last blocks landed), else it is taken now.
    """
    if (leased() if leased is not None else lease(ctx, integration)) is not None:
        ctx.storage.queue().send_message(ExportJob(integration.account, integration.id, FOLLOW_UP).to_message())


def lease(ctx: Context, integration: Integration) -> Integration | None:
    """Keep the integration from the scheduler while this job goes on: a follow-up, or the parts of a split window."""
    return modify(ctx, integration, queued_until=ctx.clock.now() + timedelta(seconds=ctx.settings.lease_seconds))
