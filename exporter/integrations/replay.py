"""Replay (an API operation): re-export one delivered window under the same name with the same bytes."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from .. import telemetry
from ..clock import from_unix
from ..errors import InputError, NotFoundError
from ..export.formats import fix_types
from ..export.plan import Selection
from ..export.runner import export_window
from ..runs import RunStatus
from ..windows import Window

if TYPE_CHECKING:  # the context wires this package's service, so it is imported for types only
    from ..context import Context

log = logging.getLogger(__name__)


def replay_window(ctx: Context, account: str, integration_id: str, start_unix: object) -> dict[str, Any]:
    """Re-export one delivered window under the same name with the same bytes; state never moves.

    The window's bounds and selection come from its run record, so a later change of frequency or
    selection does not change what a replay writes.
    """
    if isinstance(start_unix, bool) or not isinstance(start_unix, int):
        raise InputError("must be the window's start as Unix seconds (see `integrations runs`)", field="start")
    integration = ctx.repo.get(account, integration_id)
    record = ctx.runs.get(account, integration_id, start_unix)
    if record is None or record.status != RunStatus.EXPORTED:
        raise NotFoundError(
            f"no delivered window starts at {start_unix}; only delivered windows can be replayed", field="start"
        )
    selection = Selection.from_json(json.loads(record.selection)) if record.selection else integration.selection
    # A record from before typed files kept their parameter types has none: they are fixed as a first export's are.
    selection = fix_types(selection, lambda: ctx.ucd.catalog(account))
    window = Window(from_unix(record.window_start), from_unix(record.window_end))
    with telemetry.window_span(
        account, integration_id, window.start_unix, window.end_unix, integration.destination.type
    ):
        result = export_window(ctx.ucd, account, integration_id, selection, window, ctx.destination_for(integration))
    log.info(
        "window replayed",
        extra={
            "account": account,
            "integration_id": integration_id,
            "window_start": window.start_unix,
            "file": result.path,
            "rows": result.rows,
        },
    )
    return {
        "replayed": True,
        "file": result.path,
        "window_start": window.start_unix,
        "window_end": window.end_unix,
        "rows": result.rows,
        "bytes": result.bytes,
    }
