"""The format rows of `python -m bench`: the 1-hour export in each file format (exporter/export/formats),
timed against the CSV export (`export_1h`) of the same run, with the file's bytes against the CSV's.

The data set is loaded below the UCD's ingest, so the catalog knows none of its parameters; one
upsert, stored a year after the data set (no measured window reads it), tells the catalog the kinds the
data set's values have, so the Parquet file is typed as a customer's would be (price a number,
quantity an integer).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from exporter.clock import ManualClock, iso
from exporter.context import Context
from exporter.settings import Settings
from exporter.ucd.request import parse_upsert

from . import data

MB = 1_000_000
# (format, manifest): each format alone, and CSV with a manifest (what the SHA-256 from the stream costs).
FORMAT_ROWS = [("csv.gz", False), ("parquet", False), ("jsonl.gz", False), ("csv", True)]


def row_key(name: str, manifest: bool) -> str:
    return f"export_1h_{name}" + ("_manifest" if manifest else "")


def seed_catalog(settings: Settings, account: str) -> None:
    """One event per selected name, with values of the data set's kinds, stored outside every measured window."""
    clock = ManualClock(data.T0 + timedelta(days=365))
    ctx = Context.create(settings, clock)
    params = {"price": 12.5, "currency": "EUR", "quantity": 2, "url": "https://shop.example.com/p/1"}
    events = [
        {
            "event_name": e["name"],
            "timestamp": iso(clock.now()),
            "event_params": {k: params[k] for k in e["params"]},
        }
        for e in data.SELECTION_EVENTS
    ]
    ctx.ucd.upsert(parse_upsert(account, {"users": [{"user_id": "bench-catalog", "events": events}]}))


def format_rows(settings: Settings, account: str, step) -> None:
    """Measure the 1-hour export once per row of FORMAT_ROWS (each in its own process, as the CSV export)."""
    seed_catalog(settings, account)
    for name, manifest in FORMAT_ROWS:
        step(row_key(name, manifest), "export", frequency_hours=1, format=name, manifest=manifest)


def format_ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per row: time and bytes over the CSV export's, and its rows/s."""
    csv = results["export_1h"]
    ratios = {}
    for name, manifest in FORMAT_ROWS:
        r = results.get(row_key(name, manifest))
        if r is not None:
            ratios[row_key(name, manifest)] = {
                "time_over_csv": r["seconds"] / csv["seconds"],
                "bytes_over_csv": r["bytes"] / csv["bytes"],
                "same_rows_as_csv": r["rows"] == csv["rows"],
            }
    return ratios


def report_formats(results: dict[str, Any]) -> None:
    ratios = results.get("format_ratios") or {}
    if not ratios:
        return
    csv = results["export_1h"]
    print(
        f"\n{'formats (1 h window, process_job)':<28} {'rows':>10} {'MB':>8} {'wall s':>8} {'x CSV time':>10} "
        f"{'x CSV bytes':>11} {'RSS MB':>8} {'CPU s':>6}"
    )
    print("-" * 97)
    print(_line("csv (the export above)", csv, 1.0, 1.0))
    for name, manifest in FORMAT_ROWS:
        key = row_key(name, manifest)
        if key in ratios:
            label = name + (" + manifest" if manifest else "")
            print(_line(label, results[key], ratios[key]["time_over_csv"], ratios[key]["bytes_over_csv"]))


def _line(label: str, r: dict[str, Any], time_ratio: float, bytes_ratio: float) -> str:
    return (
        f"{label:<28} {r['rows']:>10,} {r['bytes'] / MB:>8.1f} {r['seconds']:>8.2f} {time_ratio:>10.2f} "
        f"{bytes_ratio:>11.3f} {r.get('peak_rss_mb', 0):>8.0f} {r.get('cpu_seconds', 0):>6.2f}"
    )
