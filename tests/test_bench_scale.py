"""The benchmark's large-window rows (bench/scale.py), run on a tiny window: the code path CI keeps working.

Not a measurement (no timing is asserted): the same window exported in one invocation, over several
invocations with a time budget that runs out, and in two parts by two worker processes, must give the
same bytes, with nothing staged twice.
"""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from bench import data, scale, start_cost
from exporter.destinations.gcs import GcsDestination
from exporter.export import runner
from exporter.export.formats import parquet
from exporter.secrets import new_key
from exporter.storage import Storage

# The large-window row stays in the quick loop as the benchmark's smoke test.
pytestmark = pytest.mark.slow_tests(
    "test_the_gcs_split_row_runs_on_a_tiny_window", "test_the_parquet_rows_run_on_a_tiny_window"
)

BLOCK = 64 * 1024


def tiny_window(azurite_connection, tag, tmp_path, monkeypatch) -> dict:
    """The spec of a tiny large window, loaded, with small blocks in this process and the worker processes."""
    spec = {
        "connection": azurite_connection,
        "table_prefix": f"bench{tag}",
        "queue": f"bench-{tag}",
        "ucd_container": f"ucd-{tag}",
        "out_container": f"out-{tag}",
        "secret_key": new_key(),
        "big_account": "bench-big",
        "workdir": str(tmp_path),
        "tune": {"block_bytes": BLOCK},  # the worker processes apply it (bench.measure._tune)
    }
    storage = Storage(scale.settings_of(spec)).ensure()
    BlobServiceClient.from_connection_string(azurite_connection).create_container(spec["out_container"])
    data.load(storage, spec["big_account"], data.Layout(6_000, 1, 1_000), range(1))
    monkeypatch.setitem(runner.export_window.__kwdefaults__, "block_bytes", BLOCK)
    return spec


def test_the_large_window_rows_run_on_a_tiny_window(azurite_connection, tag, tmp_path, monkeypatch):
    spec = tiny_window(azurite_connection, tag, tmp_path, monkeypatch)
    once = scale.big_export_once(spec)
    resumed = scale.big_export_resumed({**spec, "budget_seconds": 1e-6})
    split = scale.big_export_split({**spec, "parts": 2, "workers": 2})

    assert once["rows"] > 0 and once["blocks_staged"] >= 3 and once["restaged_bytes"] == 0
    assert resumed["blocks_staged"] == once["blocks_staged"], "no block staged twice"
    assert resumed["invocations"] >= once["blocks_staged"], "at most one block per invocation"
    assert resumed["restaged_bytes"] == 0 and resumed["sha256"] == once["sha256"]
    assert split["sha256"] == once["sha256"] and split["restaged_bytes"] == 0
    assert (
        sum(split["jobs_per_worker"]) == 2
        and split["plan"] == "the window is exported in 2 parts"
        and split["relay_seconds"] == 0
    )


def test_the_gcs_split_row_runs_on_a_tiny_window(azurite_connection, gcs, tag, tmp_path, monkeypatch):
    spec = {**tiny_window(azurite_connection, tag, tmp_path, monkeypatch), "destination": gcs.body()}
    monkeypatch.setattr(GcsDestination, "split_windows", False)  # set by the rows in this process: restored after
    once = scale.big_export_once(spec)
    split = scale.big_export_split({**spec, "parts": 2, "workers": 2, "gcs_split": True})
    # Planned whole: no part is queued, so one worker process shows it as well as two (a process costs seconds).
    planned = scale.big_export_split({**spec, "parts": 2, "workers": 1})

    assert once["sha256"] is None, "another destination's file is hashed by the caller"
    assert gcs.read(split["file"]) == gcs.read(once["file"]) and split["restaged_bytes"] == 0
    assert sum(split["jobs_per_worker"]) == 2 and split["plan"] == "the window is exported in 2 parts"
    assert split["relay_seconds"] > 0, "the parts were relayed into the session"
    assert planned["plan"] != split["plan"] and sum(planned["jobs_per_worker"]) == 0, "planned whole (the rule)"
    assert gcs.read(planned["file"]) == gcs.read(once["file"]) and planned["relay_seconds"] == 0


def test_the_parquet_rows_run_on_a_tiny_window(azurite_connection, tag, tmp_path, monkeypatch, capsys):
    spec = {**tiny_window(azurite_connection, tag, tmp_path, monkeypatch), "format": "parquet"}
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 256)  # a block may end after each of many row groups
    monkeypatch.setitem(runner.export_window.__kwdefaults__, "block_bytes", 8 * 1024)
    once = scale.big_export_once(spec)
    resumed = scale.big_export_resumed({**spec, "budget_seconds": 1e-6, "trace": True})

    assert once["file"].endswith(".parquet") and once["blocks_staged"] >= 3 and once["restaged_bytes"] == 0
    assert resumed["invocations"] >= once["blocks_staged"], "at most one block per invocation"
    assert resumed["restaged_bytes"] == 0 and resumed["sha256"] == once["sha256"]
    # `bench.start_cost --trace`: each invocation timed, its time up noted, its round trips by step.
    spans = resumed["invocation_spans"]
    assert len(spans) == resumed["invocations"] and all(up for _, _, up in spans[:-1]) and spans[-1][2] == 0
    start_cost.follow_up_costs([resumed], "tiny")
    table = capsys.readouterr().out
    assert "| start: to the first block's upload |" in table and "| the window's progress record |" in table
