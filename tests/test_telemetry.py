"""Telemetry: spans and metrics reach whatever provider the host configured; without one, nothing fails."""
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from exporter import telemetry
from exporter.host import tick
from tests.conftest import T0, call, integration_body

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def otel():
    """Global providers can be set once per process: this module owns them (as the Functions worker would)."""
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    return reader, spans


def _points(reader):
    """{metric name: [(attributes, value)]} from one collection (cumulative)."""
    found = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.sum
                    found.setdefault(metric.name, []).append((dict(point.attributes), value))
    return found


def _value(points, name, **attrs):
    return sum(v for a, v in points.get(name, []) if all(a.get(k) == w for k, w in attrs.items()))


def test_an_exported_window_emits_its_span_and_metrics(otel, ctx, clock, customer_container, azurite_connection):
    reader, spans = otel
    iid = call(ctx, "integrations_create", integration_body(azurite_connection, customer_container.container_name), account="acme").body["id"]
    clock.advance(minutes=5)
    call(ctx, "ucd_upsert", {"users": [{"user_id": "u", "events": [
        {"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z", "event_params": {"price": n}} for n in range(3)]}]},
        account="acme")
    clock.set(T0 + timedelta(hours=2, minutes=5))
    tick(ctx)

    points = _points(reader)
    assert _value(points, "export.windows", integration_id=iid) == 2
    assert _value(points, "export.rows", integration_id=iid) == 3
    assert _value(points, "export.bytes", integration_id=iid) > 0
    assert _value(points, "export.lag_seconds", integration_id=iid) == (2 * 3600 + 300)  # measured before the export
    assert _value(points, "ucd.events_stored", account="acme") >= 3
    window_spans = [s for s in spans.get_finished_spans() if s.name == "export.window" and s.attributes["integration_id"] == iid]
    assert len(window_spans) == 2
    assert window_spans[0].attributes["window.start"] == int(T0.timestamp())
    assert sum(s.attributes["export.rows"] for s in window_spans) == 3


def test_failure_counters_and_error_spans(otel):
    reader, spans = otel
    telemetry.record_credential_error("acme", "i-cred")
    telemetry.record_retry("acme", "i-cred", "transient_error")
    telemetry.record_poison_message("acme", "i-cred")
    with pytest.raises(RuntimeError):
        with telemetry.window_span("acme", "i-cred", 1, 2):
            raise RuntimeError("boom")
    points = _points(reader)
    assert _value(points, "export.credential_errors", integration_id="i-cred") == 1
    assert _value(points, "export.retries", integration_id="i-cred", reason="transient_error") == 1
    assert _value(points, "export.poison_messages", integration_id="i-cred") == 1
    failed = [s for s in spans.get_finished_spans() if s.attributes.get("integration_id") == "i-cred"]
    assert failed and failed[-1].status.status_code == StatusCode.ERROR


def test_without_a_configured_provider_telemetry_is_off_and_nothing_fails():
    code = (
        "from exporter import telemetry as t\n"
        "t.record_window_exported('a','i',1,2,0.1); t.record_export_lag('a','i',5); t.record_credential_error('a','i')\n"
        "t.record_retry('a','i','x'); t.record_poison_message('a','i'); t.record_upsert('a',1,1,0)\n"
        "with t.window_span('a','i',1,2) as s: s.set_attribute('export.rows', 1)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
