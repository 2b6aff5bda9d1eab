"""Telemetry: spans and metrics reach whatever provider the host configured; without one, nothing fails.

OpenTelemetry's global providers can be set only once per process, so this module sets them once (as
the Functions worker would) and every test uses its own integration ids, reading cumulative values
filtered by attributes. What needs a pristine process (no provider at all, or a provider set after
import) runs in a subprocess.
"""

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from exporter import telemetry
from exporter.errors import CredentialError
from exporter.integrations.bodies import parse_destination
from exporter.integrations.model import Status
from exporter.local.host import tick
from tests.destination_helpers import integration_body as cloud_integration_body
from tests.helpers import T0, call

ROOT = Path(__file__).resolve().parent.parent
ALL_METRICS = {
    "export.rows",
    "export.bytes",
    "export.windows",
    "export.window_duration",
    "export.lag",
    "scheduler.ticks",
    "scheduler.queued",
    "scheduler.index_repaired",
    "export.credential_errors",
    "export.retries",
    "export.internal_errors",
    "export.poison_messages",
    "ucd.events_received",
    "ucd.events_stored",
    "ucd.events_duplicate",
}


@pytest.fixture(scope="module")
def otel():
    """In-memory SDK providers, installed once for the process after exporter.telemetry was imported."""
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    assert metrics.get_meter_provider() is meter_provider, "another test module already set a global MeterProvider"
    assert trace.get_tracer_provider() is tracer_provider, "another test module already set a global TracerProvider"
    return reader, spans


@pytest.fixture
def iid() -> str:
    return f"i-{uuid.uuid4().hex[:8]}"


def _points(reader, name, **attrs):
    """Data points of one metric (cumulative) whose attributes contain attrs, with the metric's unit."""
    found = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if all(point.attributes.get(k) == v for k, v in attrs.items()):
                        found.append((metric.unit, dict(point.attributes), point))
    return found


def _one(reader, name, **attrs):
    """The single point of a metric for these attributes."""
    found = _points(reader, name, **attrs)
    assert len(found) == 1, (name, attrs, found)
    return found[0]


def _spans(spans, iid):
    return [s for s in spans.get_finished_spans() if s.attributes.get("integration_id") == iid]


def _everything_recorded(span) -> str:
    """Every attribute, event attribute and status text of a span, as one string to search."""
    parts = [json.dumps(dict(span.attributes), default=str), str(span.status.description)]
    parts += [json.dumps(dict(event.attributes), default=str) for event in span.events]
    return "\n".join(parts)


def test_an_exported_window_counts_rows_bytes_windows_and_duration(otel, iid):
    reader, _ = otel
    telemetry.record_window_exported("acme", iid, 120, 4096, 0.25)
    telemetry.record_window_exported("acme", iid, 0, 50, 0.5)

    for name, unit, total in [
        ("export.rows", "{row}", 120),
        ("export.bytes", "By", 4146),
        ("export.windows", "{window}", 2),
    ]:
        got_unit, attrs, point = _one(reader, name, integration_id=iid)
        assert (got_unit, attrs, point.value) == (unit, {"account": "acme", "integration_id": iid}, total), name
    unit, attrs, point = _one(reader, "export.window_duration", integration_id=iid)
    assert isinstance(point, HistogramDataPoint)
    assert unit == "s" and attrs == {"account": "acme", "integration_id": iid}
    assert point.count == 2 and point.sum == pytest.approx(0.75)
    assert point.min == pytest.approx(0.25) and point.max == pytest.approx(0.5)


def test_lag_is_one_distribution_per_tick_with_no_integration_attributes(otel):
    reader, _ = otel
    telemetry.record_tick([7200.0, 60.0, 30.5], queued=3, repaired=1)
    telemetry.record_sweep([10.0, 20.0], repaired=2)

    unit, attrs, point = _one(reader, "export.lag", observed_by="tick")
    assert isinstance(point, HistogramDataPoint)
    assert (unit, attrs) == ("s", {"observed_by": "tick"}), "no account or integration: one series, not one each"
    assert (point.count, point.sum, point.max) == (3, pytest.approx(7290.5), 7200.0)  # the reader is this test's
    assert _one(reader, "export.lag", observed_by="sweep")[2].count == 2
    assert _one(reader, "scheduler.queued")[2].value == 3
    assert sum(p.value for _, _, p in _points(reader, "scheduler.index_repaired")) == 3


def test_failure_counters_carry_account_integration_and_reason(otel, iid):
    reader, _ = otel
    telemetry.record_credential_error("acme", iid)
    telemetry.record_retry("acme", iid, "transient_error")
    telemetry.record_retry("acme", iid, "transient_error")
    telemetry.record_retry("acme", iid, "conflict")
    telemetry.record_internal_error("acme", iid, "KeyError")
    telemetry.record_poison_message("acme", iid)
    telemetry.record_poison_message("acme", iid)

    base = {"account": "acme", "integration_id": iid}
    _, attrs, point = _one(reader, "export.credential_errors", integration_id=iid)
    assert (attrs, point.value) == (base, 1)
    retries = {
        attrs["reason"]: point.value for _, attrs, point in _points(reader, "export.retries", integration_id=iid)
    }
    assert retries == {"transient_error": 2, "conflict": 1}
    assert _one(reader, "export.retries", integration_id=iid, reason="conflict")[1] == {**base, "reason": "conflict"}
    _, attrs, point = _one(reader, "export.internal_errors", integration_id=iid)
    assert (attrs, point.value) == ({**base, "error.type": "KeyError"}, 1)
    _, attrs, point = _one(reader, "export.poison_messages", integration_id=iid)
    assert (attrs, point.value) == (base, 2)


def test_upsert_counters_are_per_account(otel):
    reader, _ = otel
    account = f"acct-{uuid.uuid4().hex[:8]}"
    telemetry.record_upsert(account, 10, 7, 3)
    telemetry.record_upsert(account, 5, 0, 5)

    for name, total in [("ucd.events_received", 15), ("ucd.events_stored", 7), ("ucd.events_duplicate", 8)]:
        unit, attrs, point = _one(reader, name, account=account)
        assert (unit, attrs, point.value) == ("{event}", {"account": account}, total), name


def test_window_span_has_its_attributes_and_is_current_inside(otel, iid):
    _, spans = otel
    with telemetry.window_span("acme", iid, 1764324000, 1764327600) as span:
        assert trace.get_current_span() is span
        span.set_attribute("export.rows", 3)

    [finished] = _spans(spans, iid)
    assert finished.name == "export.window" and finished.kind == SpanKind.INTERNAL
    assert dict(finished.attributes) == {
        "account": "acme",
        "integration_id": iid,
        "window.start": 1764324000,
        "window.end": 1764327600,
        "export.rows": 3,
    }
    assert finished.status.status_code == StatusCode.UNSET and not finished.events
    assert finished.instrumentation_scope.name == "exporter"


def test_window_span_records_our_error_and_sets_error_status(otel, iid):
    _, spans = otel
    error = CredentialError("the storage account key was refused")
    with pytest.raises(CredentialError) as raised:
        with telemetry.window_span("acme", iid, 1, 2):
            raise error
    assert raised.value is error

    [finished] = _spans(spans, iid)
    assert finished.status.status_code == StatusCode.ERROR
    assert finished.status.description == "the storage account key was refused"
    assert finished.attributes["error.type"] == "exporter.errors.CredentialError"
    [event] = finished.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "exporter.errors.CredentialError"
    assert event.attributes["exception.message"] == "the storage account key was refused"
    assert "test_window_span_records_our_error" in event.attributes["exception.stacktrace"]


def test_window_span_never_records_the_text_of_other_errors(otel, iid):
    """A third-party error can echo a request (say a SAS signature): only its type and frames are kept."""
    _, spans = otel
    secret = "sig=Zm9vYmFyc2VjcmV0"
    with pytest.raises(RuntimeError):
        with telemetry.window_span("acme", iid, 1, 2):
            raise RuntimeError(f"403 for https://acct.blob.core.windows.net/c/f.csv?sv=2024&{secret}")
    with pytest.raises(HttpResponseError):  # has a .message attribute, like our own errors
        with telemetry.window_span("acme", iid, 1, 2):
            raise HttpResponseError(message=f"AuthenticationErrorDetail: signature in request '{secret}'")
    with pytest.raises(CredentialError):
        with telemetry.window_span("acme", iid, 1, 2):
            raise CredentialError(f"refused: SharedAccessSignature={secret}")

    first, second, third = _spans(spans, iid)
    assert first.status.status_code == StatusCode.ERROR and first.status.description == "RuntimeError"
    assert first.events[0].attributes["exception.type"] == "RuntimeError"
    assert second.status.description == "HttpResponseError"
    assert second.attributes["error.type"] == "azure.core.exceptions.HttpResponseError"
    for span in (first, second, third):
        assert "Zm9vYmFyc2VjcmV0" not in _everything_recorded(span)
    assert third.status.description == "refused: SharedAccessSignature=***"


def _run_python(code: str) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (pristine OTel globals), without any OTel/App Insights settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_", "PYTHON_APPLICATIONINSIGHTS_"))
    }
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


CALL_EVERYTHING = """
t.record_window_exported('a', 'i', 1, 2, 0.1); t.record_tick([5.0], 1, 0); t.record_sweep([5.0], 0); t.record_credential_error('a', 'i')
t.record_retry('a', 'i', 'x'); t.record_internal_error('a', 'i', 'KeyError'); t.record_poison_message('a', 'i')
t.record_upsert('a', 1, 1, 0)
with t.window_span('a', 'i', 1, 2) as s:
    s.set_attribute('export.rows', 1)
try:
    with t.window_span('a', 'i', 1, 2):
        raise ValueError('boom')
except ValueError:
    pass
else:
    raise SystemExit('the exception was swallowed')
"""


def test_without_a_configured_provider_every_function_is_a_no_op():
    code = (
        "from opentelemetry import metrics, trace\n"
        "from exporter import telemetry as t\n" + CALL_EVERYTHING +
        # The module configured nothing: the globals are still the API's proxies (no double configuration).
        "assert type(metrics.get_meter_provider()).__name__ == '_ProxyMeterProvider', metrics.get_meter_provider()\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider', trace.get_tracer_provider()\n"
        "print('ok')\n"
    )
    done = _run_python(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_provider_set_after_import_receives_every_signal():
    """What the Functions worker does: the app is imported first, Azure Monitor's providers are set later."""
    code = (
        "import json\n"
        "from opentelemetry import metrics, trace\n"
        "from exporter import telemetry as t\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "reader = InMemoryMetricReader(); metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
        "spans = InMemorySpanExporter(); tp = TracerProvider(); tp.add_span_processor(SimpleSpanProcessor(spans))\n"
        "trace.set_tracer_provider(tp)\n"
        + CALL_EVERYTHING
        + "names = sorted({m.name for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics})\n"
        "print(json.dumps({'metrics': names, 'spans': [[s.name, s.status.status_code.name] for s in spans.get_finished_spans()]}))\n"
    )
    done = _run_python(code)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert set(got["metrics"]) == ALL_METRICS
    assert got["spans"] == [["export.window", "UNSET"], ["export.window", "ERROR"]]


def test_an_exported_window_emits_its_span_and_metrics(otel, ctx, customer_body, clock):
    """End to end: a tick that exports two windows reports them through the export code's calls."""
    reader, spans = otel
    iid = call(ctx, "integrations_create", customer_body, account="acme").body["id"]
    clock.advance(minutes=5)
    call(
        ctx,
        "ucd_upsert",
        {
            "users": [
                {
                    "user_id": "u",
                    "events": [
                        {"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z", "event_params": {"price": n}}
                        for n in range(3)
                    ],
                }
            ]
        },
        account="acme",
    )
    clock.set(T0 + timedelta(hours=2, minutes=5))
    lags_before = sum(p.count for _, _, p in _points(reader, "export.lag", observed_by="tick"))
    tick(ctx)

    assert _one(reader, "export.windows", integration_id=iid)[2].value == 2
    assert _one(reader, "export.rows", integration_id=iid)[2].value == 3
    assert _one(reader, "export.bytes", integration_id=iid)[2].value > 0
    lag = _one(reader, "export.lag", observed_by="tick")[2]
    assert (lag.count - lags_before, lag.max) == (1, 2 * 3600 + 300), "measured by the tick, before the export"
    assert sum(point.value for _, _, point in _points(reader, "ucd.events_stored", account="acme")) >= 3
    window_spans = [s for s in _spans(spans, iid) if s.name == "export.window"]
    assert len(window_spans) == 2
    assert window_spans[0].attributes["window.start"] == int(T0.timestamp())
    assert sum(s.attributes["export.rows"] for s in window_spans) == 3


def test_a_bug_in_a_window_export_is_counted_as_an_internal_error_not_a_retry(
    otel, ctx, customer_body, clock, monkeypatch
):
    reader, spans = otel
    iid = call(ctx, "integrations_create", customer_body, account="acme").body["id"]
    monkeypatch.setattr(ctx.ucd, "read_from", lambda *a, **k: {}["no such column"])
    clock.set(T0 + timedelta(hours=1, minutes=5))
    assert tick(ctx)["worker"]["failed_deliveries"] >= 1

    _, attrs, point = _one(reader, "export.internal_errors", integration_id=iid)
    assert attrs["error.type"] == "KeyError" and point.value >= 1
    assert _points(reader, "export.retries", integration_id=iid) == []
    [failed, *_] = [s for s in _spans(spans, iid) if s.name == "export.window"]
    assert failed.attributes["error.type"] == "exporter.errors.InternalError"
    assert failed.status.description == "internal error (KeyError)"


def test_every_destination_type_is_reported_on_spans_and_metrics(otel, ctx, clock, kit):
    """Azure Blob, S3 and GCS exports carry destination.type; a credential stop is counted per type too."""
    reader, spans = otel
    iid = call(ctx, "integrations_create", cloud_integration_body(kit.body()), account="acme").body["id"]
    clock.set(T0 + timedelta(hours=1, minutes=5))
    assert tick(ctx)["worker"]["windows_exported"] == 1
    assert _one(reader, "export.windows", integration_id=iid)[1]["destination.type"] == kit.kind
    assert [s.attributes["destination.type"] for s in _spans(spans, iid) if s.name == "export.window"] == [kit.kind]

    stored = ctx.repo.get("acme", iid)  # the credentials stop working
    refused = parse_destination(kit.refused_body(), partial=False).complete().secret
    ctx.repo.replace(
        stored.with_changes(
            destination=dataclasses.replace(stored.destination, sealed_secret=ctx.integrations.secrets.seal(refused))
        )
    )
    clock.set(T0 + timedelta(hours=2, minutes=5))
    tick(ctx)
    assert ctx.repo.get("acme", iid).status == Status.CREDENTIAL_ERROR
    assert _one(reader, "export.credential_errors", integration_id=iid, **{"destination.type": kit.kind})[2].value == 1
