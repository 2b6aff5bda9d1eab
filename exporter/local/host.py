"""A local stand-in for the Functions host's queue and timer behaviour (`tick`, `serve`), and for the
HTTP request it hands a handler (`json_request`: tests and the soak call function_app's handlers).

It mirrors what the host does with host.json's queue settings: messages are received invisible,
deleted on success, made visible again on failure, and moved to `<queue>-poison` once their
dequeue count passes maxDequeueCount.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..audit import ProgressFactory
from ..context import Context
from ..jobs import JobOutcome, process_job, record_poison, schedule
from ..notifications.sender import drain_notifications

if TYPE_CHECKING:
    import azure.functions as func


log = logging.getLogger(__name__)

VISIBILITY_SECONDS = 300


MAX_JOBS_PER_DRAIN = 10_000


def drain(
    ctx: Context,
    *,
    retry_delay: int = 0,
    on_result: Callable[[JobOutcome], None] | None = None,
    max_jobs: int = MAX_JOBS_PER_DRAIN,
) -> dict[str, int]:
    """Process queued jobs until none is visible; a failed one comes back after `retry_delay` seconds.

    Stops after `max_jobs` deliveries, so a job that keeps re-queueing itself fails visibly instead of forever.
    """
    queue = ctx.storage.queue()
    poison = ctx.storage.queue(ctx.settings.poison_queue_name)
    processed = failed = poisoned = windows = 0
    while processed + failed + poisoned < max_jobs:
        messages = list(
            queue.receive_messages(messages_per_page=16, visibility_timeout=VISIBILITY_SECONDS, max_messages=16)
        )
        if not messages:
            break
        for message in messages:
            deliveries = message.dequeue_count or 1
            if deliveries > ctx.settings.max_dequeue_count:
                poison.send_message(message.content)
                queue.delete_message(message)
                record_poison(ctx, message.content)
                poisoned += 1
                continue
            try:
                result = process_job(ctx, message.content, deliveries)
            except Exception as error:  # noqa: BLE001 - the host would retry it; so do we
                failed += 1
                log.warning("export job failed (delivery %d): %s", message.dequeue_count, type(error).__name__)
                queue.update_message(message, visibility_timeout=retry_delay)
                continue
            queue.delete_message(message)
            processed += 1
            windows += result.exported
            if on_result:
                on_result(result)
    return {"jobs": processed, "failed_deliveries": failed, "poisoned": poisoned, "windows_exported": windows}


def tick(ctx: Context, progress: ProgressFactory | None = None) -> dict[str, object]:
    """Run the scheduler once, then work the queue until it is empty.

    `progress(total)` may return a context manager with `advance(n)`, told of each exported window.
    """
    scheduled = schedule(ctx)
    if progress is None:
        worked = drain(ctx)
    else:
        with progress(scheduled.windows_due) as bar:
            worked = drain(ctx, on_result=lambda result: bar.advance(result.exported))
    notified = drain_notifications(ctx)  # after the exports: a receiver never holds one up
    return {"scheduler": scheduled.to_json(), "worker": worked, "notifications": notified}


def json_request(method: str, url: str, route_params: dict[str, str], body: object = None) -> func.HttpRequest:
    """An HTTP request with a JSON body, as the Functions host hands it to a handler."""
    import azure.functions as func  # imported here: the CLI's `tick` and `serve` need none of it

    return func.HttpRequest(
        method,
        url,
        body=b"" if body is None else json.dumps(body).encode(),
        route_params=route_params,
        params={},
        headers={"Content-Type": "application/json"},
    )
