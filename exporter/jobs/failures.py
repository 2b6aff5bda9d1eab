"""What a failed attempt at a window means, and how it is kept: the one place that decides transient,
credential, destination or internal.

Ours say what they are (a destination maps its provider's errors to ours); our own storage's SDK
errors may pass; anything else is a bug: an internal error whose traceback is logged, recorded on
the window's run as a failure (never `retrying`), and raised, so redelivery tries again and the
poison queue ends it, named for what it is.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from azure.core.exceptions import AzureError

from .. import telemetry
from ..context import Context
from ..errors import (
    ConfigurationError,
    CredentialError,
    DestinationError,
    ExporterError,
    InternalError,
    TransientError,
)
from ..logs import redact
from ..runs import RunRecord, RunStatus

STOPS = (CredentialError, DestinationError)  # retries cannot fix them: the integration stops (exporter/jobs/state.py)

log = logging.getLogger(__name__)


def classify_failure(error: Exception) -> ExporterError:
    """What a failure means: ours say so; our own storage's SDK errors may pass; anything else is a bug."""
    if isinstance(error, ExporterError):
        return error
    if isinstance(error, AzureError):  # reading the UCD; the destination classifies its own
        return TransientError(f"internal storage failure while exporting ({type(error).__name__})")
    return InternalError(f"internal error ({type(error).__name__})")


def failure_text(error: ExporterError) -> str:
    """A run record's error: safe words, prefixed by the cause where the message alone does not name it."""
    if isinstance(error, ConfigurationError):
        return f"configuration error: {error.message}"
    return error.message


@contextmanager
def failure_recorded(
    ctx: Context,
    record: RunRecord,
    context: Mapping[str, object],
    destination_type: str | None = None,
    passing: tuple[type[Exception], ...] = (),
) -> Iterator[None]:
    """An attempt whose failure is recorded on `record` as what it is, then raised as one of ours.

    `passing`: exceptions that are no failure of this attempt (they pass unrecorded, as they are).
    """
    try:
        yield
    except passing:
        raise
    except Exception as raw:
        error = classify_failure(raw)
        record_failure(ctx, record, error, raw, context, destination_type)
        if error is raw:
            raise
        raise error from raw


def record_failure(
    ctx: Context,
    record: RunRecord,
    error: ExporterError,
    raw: Exception,
    context: Mapping[str, object],
    destination_type: str | None = None,
) -> None:
    """Keep a failed attempt on its run record, count it, and log it as what it is: a fault, a stop or a bug."""
    transient = isinstance(error, TransientError)
    record.status = RunStatus.RETRYING if transient else RunStatus.FAILED
    record.error = failure_text(error)
    extra = {**context, "error": record.error}
    if not ctx.runs.put_unless_exported(record):
        log.info("another worker delivered this window meanwhile; this attempt's failure is not recorded", extra=extra)
    if transient:
        telemetry.record_retry(record.account, record.integration_id, error.code, destination_type)
        log.warning("window export failed, will retry", extra=extra)
    elif isinstance(error, InternalError):
        bug = type(_bug_of(raw)).__name__
        telemetry.record_internal_error(record.account, record.integration_id, bug)
        # The traceback is what a fix needs; redacted, as any text that did not come from our own messages.
        trace = redact("".join(traceback.format_exception(raw)))
        log.error(
            "bug: unexpected %s while exporting a window; redelivery tries again, but it needs a fix",
            bug,
            extra={**extra, "traceback": trace},
        )
    elif not isinstance(error, STOPS):  # those stop the integration, logged there
        log.error("window export failed (%s); redelivery tries again", error.code, extra=extra)


def _bug_of(raw: Exception) -> BaseException:
    """The exception a bug surfaced as: an InternalError raised from another (a destination's mapping of an
    exception it did not expect) names that one; its traceback, chained, is in the log either way."""
    if isinstance(raw, InternalError) and raw.__cause__ is not None:
        return raw.__cause__
    return raw
