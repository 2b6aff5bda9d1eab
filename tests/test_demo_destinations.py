"""`python -m exporter demo --destination s3|gcs`: the demo runs end to end into a local bucket."""

import json

import pytest

from exporter.local.demo import run_demo

# Each demo starts its own servers: the S3 one is the smoke test, the GCS one is slow.
pytestmark = pytest.mark.slow_tests("test_the_demo_exports_into_a_local_bucket[gcs]")


@pytest.mark.parametrize("destination", ["s3", "gcs"])
def test_the_demo_exports_into_a_local_bucket(destination, capsys):
    assert run_demo(hours=2, users=20, now="2026-11-28T10:00:00Z", destination=destination) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["destination"] == destination
    assert len(summary["files"]) == 2 and all(f.startswith("insider/demo-shop_events_") for f in summary["files"])
    assert summary["rows_exported"] > 0 and summary["sample_rows"][0][:4] == [
        "event_id",
        "user_id",
        "event_name",
        "timestamp",
    ]
    assert "Verify authentication: ok=True" in err and "bucket 'customer-exports'" in err
    assert "secret_access_key" not in err and "PRIVATE KEY" not in err
