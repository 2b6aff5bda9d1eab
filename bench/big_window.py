"""The large window's rows of `python -m bench` (measured by bench/scale.py): one window of `--big-factor` x
the 1-hour window's events, as CSV in one invocation, resumed and split; as Parquet in one invocation and
resumed; into the GCS emulator in one invocation, against its I/O floor, and split (parts relayed).

`--big-rows` picks the groups (csv, parquet, gcs); `--only-big` skips every other row of the run.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

from exporter.storage import Storage

from . import data
from .table import MB, row

BIG_ACCOUNT = "bench-big"
GROUPS = ("csv", "parquet", "gcs")


def groups(args: argparse.Namespace) -> set[str]:
    chosen = {g for g in args.big_rows.split(",") if g}
    if "gcs" in chosen and "gcs" not in args.cloud.split(","):
        chosen.discard("gcs")  # `--cloud ''` skips every GCS row
    return chosen


def big_window_rows(args: argparse.Namespace, storage: Storage, step, results: dict[str, Any], workdir: Path) -> None:
    """One window of `--big-factor` x the 1-hour window's events: in one invocation, resumed, and split."""
    layout = data.Layout(args.events * args.big_factor // args.hours, 1, args.segment_rows)
    print(f"loading the large window: {layout.events:,} events in one hour ...", flush=True)
    loaded = data.load(storage, BIG_ACCOUNT, layout, range(1))
    results["big_dataset"] = {**loaded, "factor": args.big_factor}
    chosen = groups(args)
    if "csv" in chosen:
        once = step("big_export_once", "big_export_once", big_account=BIG_ACCOUNT)
        # An invocation runs its budget plus the blocks in flight when it stops (up to 4): an eighth of the
        # one-invocation time gives the 10x window (about 55 blocks) 5 or 6 invocations. Each invocation
        # also pays a fixed start (job, state, listing, the first segments read before the first block).
        budget = once["seconds"] / 8
        step("big_export_resumed", "big_export_resumed", big_account=BIG_ACCOUNT, budget_seconds=budget)
        step("big_export_split", "big_export_split", big_account=BIG_ACCOUNT, parts=4, workers=2, workdir=str(workdir))
    if "parquet" in chosen:
        parquet = step("big_export_once_parquet", "big_export_once", big_account=BIG_ACCOUNT, format="parquet")
        spec = {"big_account": BIG_ACCOUNT, "format": "parquet", "budget_seconds": parquet["seconds"] / 8}
        step("big_export_resumed_parquet", "big_export_resumed", **spec)  # a Parquet window is never split
        if args.profile:  # untimed: where the invocations' time goes (a profiler slows what it watches)
            profile = str((workdir / "profile-resumed-parquet.txt").resolve())
            step("big_export_resumed_parquet_profiled", "big_export_resumed", **spec, profile=profile)
            print(f"  profile: {profile}", flush=True)
    if "gcs" in chosen:
        big_window_gcs_rows(storage, step, workdir)


def big_window_gcs_rows(storage: Storage, step, workdir: Path) -> None:
    """The large window into the GCS emulator: in one invocation, and split (parts staged, then relayed)."""
    from exporter.local.demotargets import open_demo_target

    print("starting the local GCS (gcp-storage-emulator) ...", flush=True)
    target = open_demo_target("gcs", storage.settings.storage_connection)
    try:
        spec = {"big_account": BIG_ACCOUNT, "destination": target.body}
        once = step("big_export_once_gcs", "big_export_once", **spec)
        big = {"account": BIG_ACCOUNT, "window_start": data.T0.isoformat(), "frequency_hours": 1}
        step(
            "io_floor_big_gcs",
            "io_floor_cloud",
            **big,
            csv_bytes=once["bytes"],
            destination=target.body,
            floor_only=True,
        )
        split = step(
            "big_export_split_gcs", "big_export_split", **spec, parts=4, workers=2, workdir=str(workdir), gcs_split=True
        )
        # The same request to split, planned by the rule (GcsDestination.split_windows): exported whole.
        planned = step("big_export_planned_gcs", "big_export_split", **spec, parts=4, workers=2, workdir=str(workdir))
        for r in (once, split, planned):
            r["sha256"] = hashlib.sha256(target.read(r["file"])).hexdigest()
    finally:
        target.stop()


def add_big_window_ratios(r: dict[str, Any]) -> None:
    ra = r.setdefault("ratios", {})
    targets = ra.setdefault("targets", {})
    if "big_export_once" in r:
        once, resumed, split = r["big_export_once"], r["big_export_resumed"], r["big_export_split"]
        ra["big_resumed_over_once_time"] = resumed["seconds"] / once["seconds"]
        ra["big_split_over_once_time"] = split["seconds"] / once["seconds"]
        ra["big_resumed_over_once_rss"] = resumed["peak_rss_mb"] / once["peak_rss_mb"]
        targets["large window: resumed over >= 5 invocations"] = resumed["invocations"] >= 5
        targets["large window: resumed <= 1.15 x one invocation"] = ra["big_resumed_over_once_time"] <= 1.15
        targets["large window: 0 bytes re-staged (no faults)"] = resumed["restaged_bytes"] == 0
        targets["large window: resumed and split are the same bytes"] = (
            resumed["sha256"] == once["sha256"] == split["sha256"]
        )
    if "big_export_once_parquet" in r:
        add_big_parquet_ratios(r)
    if "big_export_split_gcs" in r:
        gcs_once, gcs_split = r["big_export_once_gcs"], r["big_export_split_gcs"]
        ra["big_gcs_split_over_once_time"] = gcs_split["seconds"] / gcs_once["seconds"]
        ra["big_gcs_planned_over_once_time"] = r["big_export_planned_gcs"]["seconds"] / gcs_once["seconds"]
        ra["big_gcs_once_rss_mb"] = gcs_once["peak_rss_mb"]
        ra["big_gcs_once_over_floor_time"] = gcs_once["seconds"] / r["io_floor_big_gcs"]["seconds"]
        csv = r.get("big_export_once", gcs_once)  # the Azure file, when its row ran
        targets["large window: GCS split (relayed) is the same bytes"] = (
            gcs_split["sha256"] == gcs_once["sha256"] == r["big_export_planned_gcs"]["sha256"] == csv["sha256"]
        )
        targets["large window: a GCS window asked to split is planned whole"] = (
            r["big_export_planned_gcs"]["plan"] != r["big_export_split_gcs"]["plan"]
        )


def add_big_parquet_ratios(r: dict[str, Any]) -> None:
    """The Parquet window continued over several invocations against one: the same targets as the CSV's."""
    once, resumed = r["big_export_once_parquet"], r["big_export_resumed_parquet"]
    ra, targets = r["ratios"], r["ratios"]["targets"]
    ra["big_parquet_resumed_over_once_time"] = resumed["seconds"] / once["seconds"]
    ra["big_parquet_resumed_over_once_rss"] = resumed["peak_rss_mb"] / once["peak_rss_mb"]
    targets["large window, Parquet: resumed over >= 5 invocations"] = resumed["invocations"] >= 5
    targets["large window, Parquet: resumed <= 1.15 x one invocation"] = (
        ra["big_parquet_resumed_over_once_time"] <= 1.15
    )
    targets["large window, Parquet: 0 bytes re-staged (no faults)"] = resumed["restaged_bytes"] == 0
    targets["large window, Parquet: resumed is the same bytes"] = resumed["sha256"] == once["sha256"]


def report_big_window(r: dict[str, Any]) -> None:
    if "big_dataset" not in r:
        return
    d, ra = r["big_dataset"], r["ratios"]
    print(f"\nlarge window: {d['events']:,} events in one hour ({d['factor']} x), {d['segments']} segments")
    print("-" * 107)
    if "big_export_once" in r:
        once, resumed, split = r["big_export_once"], r["big_export_resumed"], r["big_export_split"]
        print(row("export in one invocation", once))
        print(row(f"export over {resumed['invocations']} invocations (budget)", resumed))
        print(row(f"export in {split['parts']} parts by {split['workers']} worker processes", split))
        print(
            f"  resumed / one invocation (time)         {ra['big_resumed_over_once_time']:.2f}   target <= 1.15"
            f"   (re-staged bytes: {resumed['restaged_bytes']:,}, target 0)"
        )
        print(f"  resumed / one invocation (peak RSS)     {ra['big_resumed_over_once_rss']:.2f}   target <= 1.1")
        print(f"  split / one invocation (time)           {ra['big_split_over_once_time']:.2f}")
        if "digest_seconds" in split:
            print(
                f"  split: its SHA-256 read back after      {split['digest_seconds']:.2f} s"
                f"   ({split['digest_seconds'] / split['seconds']:.2f} x the split export, {split['bytes']:,} bytes)"
            )
    if "big_export_once_parquet" in r:
        parquet, continued = r["big_export_once_parquet"], r["big_export_resumed_parquet"]
        print(row("Parquet: export in one invocation", parquet))
        print(row(f"Parquet: over {continued['invocations']} invocations (budget)", continued))
        print(
            f"  Parquet resumed / one invocation (time) {ra['big_parquet_resumed_over_once_time']:.2f}   target <= 1.15"
            f"   (re-staged bytes: {continued['restaged_bytes']:,}, target 0)"
        )
        print(
            f"  Parquet resumed / one (peak RSS)        {ra['big_parquet_resumed_over_once_rss']:.2f}   target <= 1.1"
        )
    if "big_export_split_gcs" in r:
        report_big_gcs(r)
    for name, ok in ra["targets"].items():
        if name.startswith("large window"):
            print(f"  [{'met' if ok else 'NOT met'}] {name}")


def report_big_gcs(r: dict[str, Any]) -> None:
    ra, relayed = r["ratios"], r["big_export_split_gcs"]
    print(row("GCS: export in one invocation", r["big_export_once_gcs"]))
    print(row("GCS: in 4 parts by 2 processes, relayed", relayed))
    print(row("GCS: asked to split, planned whole (the rule)", r["big_export_planned_gcs"]))
    print(
        row(
            "GCS: I/O floor (download || GCS upload)",
            {**r["io_floor_big_gcs"], "rows": r["big_export_once_gcs"]["rows"]},
        )
    )
    print(f"  GCS one invocation / its floor (time)   {ra['big_gcs_once_over_floor_time']:.2f}   target <= 1.15")
    print(f"  GCS split, relayed / one invocation     {ra['big_gcs_split_over_once_time']:.2f}")
    print(f"  GCS split, as planned / one invocation  {ra['big_gcs_planned_over_once_time']:.2f}   target <= 1.3")
    if relayed.get("relay_seconds"):
        print(
            f"   of which the relay: {relayed['relay_seconds']:.2f} s "
            f"({relayed['bytes'] / MB / relayed['relay_seconds']:.1f} MB/s, staging download || GCS upload)"
        )
