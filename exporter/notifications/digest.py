"""The digest step: a window delivered without its file's SHA-256 has it read back from the destination.

A split window's parts are hashed apart, by several workers at once, and SHA-256 cannot be joined from
the hashes of its pieces; so once the last part commits the file (and the window advances, as any
window does: the export never waits for this), the outbox row the advance wrote (kind `digest`,
exporter/notifications/outbox.py) has the notification trigger stream the committed file back through
the destination's read-only `read_file`, one read piece in memory at a time, and write the SHA-256 on
the run record. Only then is the window's `delivered` event sent, with that SHA-256. Idempotent: a
record that has its SHA-256 is not read again, and the write is conditional on the record as read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..audit import file_sha256
from ..context import Context
from ..errors import CredentialError, DestinationError, TransientError
from ..integrations.model import Integration
from ..runs import RunRecord, RunStatus

log = logging.getLogger(__name__)

# What reading the file back may meet and pass: retried with the notifications' backoff for 24 hours.
ANTICIPATED = (CredentialError, DestinationError, TransientError)


@dataclass
class Counted:
    """The bytes read so far (an audit progress bar's interface)."""

    bytes: int = 0

    def advance(self, n: int = 1) -> None:
        self.bytes += n


def read_back(ctx: Context, integration: Integration, window_start: int) -> RunRecord | None:
    """The window's run record with its file's SHA-256 (read back and written if it had none); None: no record."""
    record = ctx.runs.get(integration.account, integration.id, window_start)
    if record is None or record.sha256 or record.status != RunStatus.EXPORTED:
        return record
    read = Counted()
    sha256 = file_sha256(ctx.destination_for(integration), record.file, read)
    context = {"account": integration.account, "integration_id": integration.id, "window_start": window_start}
    if read.bytes != record.bytes:  # not the file we committed: the audit reports it; no hash of it is recorded
        log.error("the delivered file is not the size its run record says", extra={**context, "read": read.bytes})
        return record
    written = ctx.runs.record_sha256(record, sha256)
    log.info("window's SHA-256 read back", extra={**context, "bytes": read.bytes})
    return written
