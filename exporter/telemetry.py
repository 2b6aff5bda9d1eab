"""Telemetry through the OpenTelemetry API only.

The Functions Python worker configures Azure Monitor itself when
PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true and azure-monitor-opentelemetry is installed, so
this module never sets a provider or an exporter (doing so would double every signal). Without a
configured provider the API is a no-op: telemetry is off and nothing fails. Attributes are only
account, integration id and reason: never a secret.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

_NAME = "exporter"
# The global proxies forward to whatever provider is set later (by the worker, or a test).
_tracer = trace.get_tracer(_NAME)
_meter = metrics.get_meter(_NAME)

_rows = _meter.create_counter("export.rows", unit="{row}", description="Rows exported")
_bytes = _meter.create_counter("export.bytes", unit="By", description="CSV bytes exported")
_windows = _meter.create_counter("export.windows", unit="{window}", description="Windows exported")
_duration = _meter.create_histogram("export.window_duration", unit="s", description="Time to export one window")
_credential_errors = _meter.create_counter("export.credential_errors", description="Integrations stopped by a credential error")
_retries = _meter.create_counter("export.retries", description="Window exports that failed transiently and will be retried")
_poison = _meter.create_counter("export.poison_messages", description="Export jobs moved to the poison queue")
_received = _meter.create_counter("ucd.events_received", unit="{event}", description="Events received by upsert")
_stored = _meter.create_counter("ucd.events_stored", unit="{event}", description="Events newly stored")
_duplicates = _meter.create_counter("ucd.events_duplicate", unit="{event}", description="Events already stored")

_lag: dict[tuple[str, str], float] = {}
_lag_lock = threading.Lock()


def _observe_lag(_options: CallbackOptions) -> Iterator[Observation]:
    with _lag_lock:
        items = list(_lag.items())
    for (account, integration_id), lag in items:
        yield Observation(lag, {"account": account, "integration_id": integration_id})


_meter.create_observable_gauge(
    "export.lag_seconds", callbacks=[_observe_lag], unit="s",
    description="Now minus last_success_end, per active integration",
)


def _attrs(account: str, integration_id: str) -> dict[str, str]:
    return {"account": account, "integration_id": integration_id}


@contextmanager
def window_span(account: str, integration_id: str, start: int, end: int):
    """A span around one window's export; exceptions are recorded and mark it as an error."""
    attributes = {**_attrs(account, integration_id), "window.start": start, "window.end": end}
    with _tracer.start_as_current_span("export.window", attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as error:
            # Our errors carry customer-safe messages; the type name is enough for anything else.
            span.set_status(Status(StatusCode.ERROR, getattr(error, "message", type(error).__name__)))
            span.set_attribute("error.type", type(error).__name__)
            raise


def record_window_exported(account: str, integration_id: str, rows: int, nbytes: int, duration_s: float) -> None:
    """Count one delivered window with its rows, bytes and duration."""
    attrs = _attrs(account, integration_id)
    _rows.add(rows, attrs)
    _bytes.add(nbytes, attrs)
    _windows.add(1, attrs)
    _duration.record(duration_s, attrs)


def record_export_lag(account: str, integration_id: str, lag_seconds: float) -> None:
    """Remember the latest lag of an integration; the gauge reports it at each collection."""
    with _lag_lock:
        _lag[(account, integration_id)] = float(lag_seconds)


def record_credential_error(account: str, integration_id: str) -> None:
    """Count an integration stopped by a credential error."""
    _credential_errors.add(1, _attrs(account, integration_id))


def record_retry(account: str, integration_id: str, reason: str) -> None:
    """Count a transient failure that will be retried."""
    _retries.add(1, {**_attrs(account, integration_id), "reason": reason})


def record_poison_message(account: str, integration_id: str) -> None:
    """Count a job moved to the poison queue."""
    _poison.add(1, _attrs(account, integration_id))


def record_upsert(account: str, received: int, stored: int, duplicates: int) -> None:
    """Count an upsert's received, stored and duplicate events."""
    attrs = {"account": account}
    _received.add(received, attrs)
    _stored.add(stored, attrs)
    _duplicates.add(duplicates, attrs)
