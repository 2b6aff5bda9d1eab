"""`python -m bench.fleet` in its short form: it runs, queues every due integration, counts calls,
and writes its targets (the full run is a command of its own: docs/fleet.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A browser / subprocess test: the quick loop (-m "not slow") leaves it out; the full command runs it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_the_fleet_bench_short_form_writes_its_targets(tmp_path):
    out = tmp_path / "fleet.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.fleet", "--sizes", "150,300", "--due", "10", "--burst", "60", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(out.read_text())
    assert set(result["targets"]) == {
        "tick(300) / tick(150) <= 1.5",
        "a minute with 60 due queued in <= 10 s",
        "storage calls per due integration <= 3",
        "every due integration queued",
    }, done.stdout + done.stderr
    assert (
        result["targets"]["every due integration queued"]
        and result["targets"]["storage calls per due integration <= 3"]
    )
    assert [row["integrations"] for row in result["sizes"]] == [150, 300]
    assert all(tick["queued"] == 10 for row in result["sizes"] for tick in row["ticks"])
    assert result["burst"]["ticks"][0]["queued"] == 60
    assert "targets" in done.stdout
