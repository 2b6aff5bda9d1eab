"""Export telemetry (spans and metrics) through the OpenTelemetry API only.

No provider, reader or exporter is configured here, on purpose: in Azure Functions the Python worker
configures Azure Monitor itself (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true with
azure-monitor-opentelemetry in requirements.txt, reading APPLICATIONINSIGHTS_CONNECTION_STRING), and a
second configuration from app code would duplicate or fight it. Without any configured provider the
API is a no-op: telemetry is off and nothing fails. Attributes are only account, integration id,
destination type, window bounds, a retry reason and an exception class name; exception text that could hold a secret is
never recorded.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

from .errors import ExporterError
from .logs import redact

_SCOPE = "exporter"

# Obtained at import on purpose: until a provider is set these are the API's global proxies, and the
# proxies rebind every tracer, meter and instrument created through them to the provider set later
# (by the Functions worker, or by a test). tests/test_telemetry.py proves this in a fresh process.
_tracer = trace.get_tracer(_SCOPE)
_meter = metrics.get_meter(_SCOPE)

_rows = _meter.create_counter("export.rows", unit="{row}", description="Rows written to exported files")
_bytes = _meter.create_counter("export.bytes", unit="By", description="Bytes written to exported files")
_windows = _meter.create_counter("export.windows", unit="{window}", description="Windows exported")
_duration = _meter.create_histogram("export.window_duration", unit="s", description="Time to export one window")
_credential_errors = _meter.create_counter(
    "export.credential_errors", unit="{error}", description="Integrations stopped by a credential error"
)
_retries = _meter.create_counter(
    "export.retries", unit="{retry}", description="Window exports that failed transiently and will be retried"
)
_internal_errors = _meter.create_counter(
    "export.internal_errors",
    unit="{error}",
    description="Window exports that failed with an unexpected exception (a bug)",
)
_poison = _meter.create_counter(
    "export.poison_messages", unit="{message}", description="Export jobs moved to the poison queue"
)
_received = _meter.create_counter("ucd.events_received", unit="{event}", description="Events received by UCD upserts")
_stored = _meter.create_counter("ucd.events_stored", unit="{event}", description="Events newly stored by UCD upserts")
_duplicates = _meter.create_counter(
    "ucd.events_duplicate", unit="{event}", description="Events received that were already stored"
)

# Lag is one distribution per tick, never one record per integration per minute: the scheduler
# sees only the integrations that are due (their lag), the hourly sweep sees them all.
_lag = _meter.create_histogram(
    "export.lag",
    unit="s",
    description="Time since the end of the last exported window, of the integrations a tick or sweep looked at",
)
_ticks = _meter.create_counter("scheduler.ticks", unit="{tick}", description="Scheduler runs")
_queued = _meter.create_counter("scheduler.queued", unit="{integration}", description="Export jobs queued")
_index_repaired = _meter.create_counter(
    "scheduler.index_repaired",
    unit="{entry}",
    description="Due index entries that disagreed with their integration and were put right",
)


def _attrs(account: str, integration_id: str, destination_type: str | None = None) -> dict[str, str]:
    """The two attributes every export signal carries, and the destination type (azure_blob, s3, gcs) where known."""
    attrs = {"account": account, "integration_id": integration_id}
    if destination_type:
        attrs["destination.type"] = destination_type
    return attrs


def _safe_message(error: BaseException) -> str:
    """Our own errors' messages (secret-free by design, redacted again); otherwise only the type name."""
    if isinstance(error, ExporterError):
        return redact(error.message)
    return type(error).__name__


def _record_error(span: Span, error: BaseException) -> None:
    """Mark the span as failed and add an exception event without the raw exception text."""
    message = _safe_message(error)
    cls = type(error)
    type_name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    # Frames only (file, line, source): str() of a third-party error can echo a request or response,
    # e.g. a SAS signature in a storage 403 body, so it never reaches the stack trace either.
    stack = "".join(traceback.format_tb(error.__traceback__)) + f"{type_name}: {message}\n"
    span.record_exception(
        error,
        attributes={
            "exception.type": type_name,
            "exception.message": message,
            "exception.stacktrace": "Traceback (most recent call last):\n" + stack,
        },
        escaped=True,
    )
    span.set_attribute("error.type", type_name)
    span.set_status(Status(StatusCode.ERROR, message))


@contextmanager
def window_span(
    account: str, integration_id: str, start: int, end: int, destination_type: str | None = None
) -> Iterator[Span]:
    """Span "export.window" around one window's export; an exception is recorded and marks it failed."""
    attributes: dict[str, str | int] = {
        **_attrs(account, integration_id, destination_type),
        "window.start": int(start),
        "window.end": int(end),
    }
    # The SDK's own exception handling would put str(exception) into the event and the status.
    with _tracer.start_as_current_span(
        "export.window", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as error:
            _record_error(span, error)
            raise


def record_window_exported(
    account: str, integration_id: str, rows: int, nbytes: int, duration_s: float, destination_type: str | None = None
) -> None:
    """Count one exported window with its rows and bytes, and record its duration."""
    attrs = _attrs(account, integration_id, destination_type)
    _rows.add(rows, attrs)
    _bytes.add(nbytes, attrs)
    _windows.add(1, attrs)
    _duration.record(duration_s, attrs)


def record_tick(lags_seconds: list[float], queued: int, repaired: int) -> None:
    """One scheduler run: the lag of each integration it found due, how many it queued and repaired."""
    _record_due_index("tick", lags_seconds, repaired)
    _ticks.add(1)
    _queued.add(queued)


def record_sweep(lags_seconds: list[float], repaired: int) -> None:
    """One sweep of the due index: the lag of every integration meant to deliver, and the repairs."""
    _record_due_index("sweep", lags_seconds, repaired)


def _record_due_index(observed_by: str, lags_seconds: list[float], repaired: int) -> None:
    """What a look at the due index saw (lags and repairs), told apart by who looked."""
    attrs = {"observed_by": observed_by}
    for lag in lags_seconds:
        _lag.record(lag, attrs)
    _index_repaired.add(repaired, attrs)


def record_credential_error(account: str, integration_id: str, destination_type: str | None = None) -> None:
    """Count an integration stopped by a credential error."""
    _credential_errors.add(1, _attrs(account, integration_id, destination_type))


def record_retry(account: str, integration_id: str, reason: str, destination_type: str | None = None) -> None:
    """Count a transient failure that will be retried, by reason (an error code, never a message)."""
    _retries.add(1, {**_attrs(account, integration_id, destination_type), "reason": reason})


def record_internal_error(account: str, integration_id: str, error_type: str) -> None:
    """Count a window export that failed with an unexpected exception, by its class name (never its text)."""
    _internal_errors.add(1, {**_attrs(account, integration_id), "error.type": error_type})


def record_poison_message(account: str, integration_id: str) -> None:
    """Count an export job moved to the poison queue."""
    _poison.add(1, _attrs(account, integration_id))


def record_upsert(account: str, received: int, stored: int, duplicates: int) -> None:
    """Count one upsert's received, newly stored and duplicate events."""
    attrs = {"account": account}
    _received.add(received, attrs)
    _stored.add(stored, attrs)
    _duplicates.add(duplicates, attrs)
