"""`python -m bench.start_cost`: the job's fixed start cost alone (an empty window, header only), per
destination type, without loading a data set (bench/README.md, "start cost").

Each run is `bench.measure`'s `export` of an empty window in a fresh process, as `python -m bench` measures
the `start_cost` rows. `--root DIR` (repeatable) runs the same measurement with another checkout's exporter
(e.g. a worktree of main), the checkouts interleaved run by run, so a shared machine's drifting load
weighs on each alike; each reports its fastest of `--repeat` runs, wall and CPU seconds. Each is measured
cold (the process's first job) and warm (the integration's next job, after its window before in the same
process: what a running worker pays per invocation). `--profile DIR` writes one pyinstrument profile of a
warm job per type and checkout there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from exporter.local.devstorage import start_azurite
from exporter.secrets import new_key
from exporter.storage import Storage

from .scale import settings_of

ROOT = Path(__file__).resolve().parent.parent


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.start_cost", description=__doc__)
    p.add_argument("--repeat", type=int, default=5, help="runs per type and checkout; the fastest is reported")
    p.add_argument("--kinds", default="azure_blob,s3,gcs", help="destination types (comma-separated)")
    p.add_argument("--root", action="append", default=[], help="another checkout to measure beside this one")
    p.add_argument("--profile", default="", help="a directory for one pyinstrument profile per type and checkout")
    p.add_argument(
        "--trace", action="store_true", help="print each HTTP round trip of one warm job per type and checkout"
    )
    p.add_argument(
        "--parquet-resumed",
        type=float,
        default=0.0,
        help="instead: the 10 x window as Parquet in one invocation and resumed with this budget (seconds)",
    )
    return p.parse_args(argv)


def _measure(root: Path, spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """This checkout's measurement (bench/measure.py) of `root`'s exporter: a directory of two links."""
    path = workdir / f"spec-{len(list(workdir.iterdir()))}.json"
    path.write_text(json.dumps(spec))
    shim = workdir / f"code-{abs(hash(str(root)))}"
    if not shim.exists():
        shim.mkdir()
        (shim / "bench").symlink_to(ROOT / "bench")
        (shim / "exporter").symlink_to(root / "exporter")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.measure", str(path)],
        cwd=shim,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"the start-cost measurement failed in {root} (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _keep_fastest(best: dict[str, dict[str, Any]], name: str, r: dict[str, Any]) -> None:
    """`best[name]`: the first result of `name`, its wall and CPU seconds the least seen so far (each apart)."""
    b = best.setdefault(name, r)
    b.update(seconds=min(b["seconds"], r["seconds"]), cpu_seconds=min(b["cpu_seconds"], r["cpu_seconds"]))


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    os.environ.setdefault("EXPORT_ALLOW_PRIVATE_ENDPOINTS", "true")  # the local servers are on loopback
    from exporter.local.demotargets import open_demo_target

    roots = [ROOT, *(Path(r).resolve() for r in args.root)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-start-"))
    azurite = start_azurite()
    try:
        spec: dict[str, Any] = {
            "kind": "export",
            "connection": azurite.connection_string,
            "server_pid": azurite.process.pid,
            "table_prefix": "bench",
            "queue": "bench-jobs",
            "ucd_container": "ucd-bench",
            "out_container": "bench-out",
            "secret_key": new_key(),
            "account": "bench",
            "hours": 4,
            "frequency_hours": 1,
            "empty": True,
        }
        storage = Storage(settings_of(spec)).ensure()
        BlobServiceClient.from_connection_string(spec["connection"]).create_container(spec["out_container"])
        if args.parquet_resumed:
            return _parquet_resumed(args, roots, storage, spec, workdir)
        results: dict[str, dict[str, Any]] = {}
        for kind in [k for k in args.kinds.split(",") if k]:
            target = open_demo_target(kind, azurite.connection_string) if kind != "azure_blob" else None
            try:
                kind_spec = {**spec, **({"destination": {**target.body, "prefix": "bench/"}} if target else {})}
                for _ in range(args.repeat):
                    for root, warm in [(root, warm) for warm in (False, True) for root in roots]:
                        r = _measure(root, {**kind_spec, "warm": warm}, workdir)
                        _keep_fastest(results, f"{kind}{' warm' if warm else ''} {root}", r)
                if args.profile:
                    for i, root in enumerate(roots):
                        out = Path(args.profile).resolve() / f"start-{kind}-{i}.txt"
                        out.parent.mkdir(parents=True, exist_ok=True)
                        _measure(root, {**kind_spec, "profile": str(out), "warm": True}, workdir)
                if args.trace:
                    for root in roots:
                        trips = _measure(root, {**kind_spec, "trace": True, "warm": True}, workdir)["round_trips"]
                        print(f"round trips of a warm job, {kind} {root} (ms from the job's start):")
                        for start, end, thread, method, what in trips:
                            print(f"  {start:6.1f} {end:6.1f} {end - start:5.1f}  {thread[:12]:12} {method:6} {what}")
            finally:
                if target is not None:
                    target.stop()
        print(f"fastest of {args.repeat} (wall s, CPU s of the measuring process):")
        for name, r in results.items():
            print(f"  {name}: {r['seconds'] * 1000:.0f} ms wall, {r['cpu_seconds'] * 1000:.0f} ms CPU")
        print(json.dumps({k: {"seconds": v["seconds"], "cpu_seconds": v["cpu_seconds"]} for k, v in results.items()}))
    finally:
        azurite.stop()
    return 0


def _parquet_resumed(
    args: argparse.Namespace, roots: list[Path], storage: Storage, spec: dict[str, Any], workdir: Path
) -> int:
    """The 10 x window (bench/big_window.py) as Parquet, in one invocation and resumed over invocations of a
    fixed budget, each checkout in turn, `--repeat` times: the resumed row's extra cost per invocation."""
    from . import data
    from .big_window import BIG_ACCOUNT

    data.load(storage, BIG_ACCOUNT, data.Layout(3_000_000 * 10 // 6, 1, 30_000), range(1))
    big = {**spec, "big_account": BIG_ACCOUNT, "format": "parquet"}
    best: dict[str, dict[str, Any]] = {}
    for _ in range(max(1, args.repeat)):
        for root in roots:
            for kind, extra in (
                ("big_export_once", {}),
                ("big_export_resumed", {"budget_seconds": args.parquet_resumed}),
            ):
                r = _measure(root, {**big, **extra, "kind": kind}, workdir)
                name = f"{kind} {root}"
                _keep_fastest(best, name, r)
                print(
                    f"  {name}: {r['seconds']:.2f} s, {r['cpu_seconds']:.2f} s CPU, {r['invocations']} invocations",
                    flush=True,
                )
    if args.profile:  # untimed: where the resumed run's time goes (summed over its invocations)
        for i, root in enumerate(roots):
            out = Path(args.profile).resolve() / f"parquet-resumed-{i}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            spec = {**big, "kind": "big_export_resumed", "budget_seconds": args.parquet_resumed, "profile": str(out)}
            _measure(root, spec, workdir)
            print(f"  profile of the resumed run, {root}: {out}", flush=True)
    if args.trace:  # traced runs apart, interleaved too: where each follow-up's time goes
        traced: dict[Path, list[dict[str, Any]]] = {root: [] for root in roots}
        for _ in range(max(1, args.repeat)):
            for root in roots:
                spec = {**big, "kind": "big_export_resumed", "budget_seconds": args.parquet_resumed, "trace": True}
                traced[root].append(_measure(root, spec, workdir))
        for root, runs in traced.items():
            follow_up_costs(runs, str(root))
    for root in roots:
        once, resumed = best[f"big_export_once {root}"], best[f"big_export_resumed {root}"]
        same = (resumed["sha256"], resumed["rows"], resumed["restaged_bytes"]) == (once["sha256"], once["rows"], 0)
        print(
            f"{root}: resumed / one {resumed['seconds'] / once['seconds']:.2f} (time, fastest of {args.repeat}), "
            f"{resumed['cpu_seconds'] / once['cpu_seconds']:.2f} (CPU); {resumed['invocations']} invocations; "
            f"the same file ({once['rows']:,} rows, {once['bytes']:,} bytes, 0 bytes staged twice): {same}"
        )
    return 0


STEPS = (  # (step, what its round trips' method and path contain), the first that fits
    ("the integration (read, lease)", ("integrations(",)),
    ("the due index (with the lease)", ("$batch",)),
    ("the window's progress record", ("~progress",)),
    ("the window's split plan", ("~split",)),
    ("the window's run record", ("RowKey=",)),
    ("the host's queue (receive, delete, follow-up)", ("/messages",)),
    ("a Parquet block's note (list, read, write)", ("staging",)),
    ("the segment listing", ("comp=list",)),
    ("the upload's staged blocks (resume)", ("GET", "comp=blocklist")),
    ("the segments read", (".arrow",)),
    ("the blocks staged", ("comp=block&",)),
    ("the commit", ("PUT", "comp=blocklist")),
)


def _step(method: str, what: str) -> str:
    text = f"{method} {what}"
    return next((name for name, parts in STEPS if all(p in text for p in parts)), "other")


def follow_up_costs(runs: list[dict[str, Any]], root: str) -> None:
    """Traced resumed runs: where each follow-up invocation's time goes (medians over all of them), and its round
    trips per step. A follow-up's fixed cost is its time before its first segment arrives and its first
    block is staged, the drain once its time ran out, its end records, and the host's queue between."""
    from statistics import median

    print(f"traced resumed runs, {root}: " + ", ".join(f"{r['seconds']:.2f} s ({r['invocations']})" for r in runs))
    phases: dict[str, list[float]] = {}
    steps: dict[str, list[tuple[int, float, float]]] = {}
    for r in runs:
        _follow_ups(r, phases, steps)
    print("  | a follow-up invocation (median over them) | ms |")
    print("  |---|---|")
    for name, values in phases.items():
        print(f"  | {name} | {median(values):.0f} |")
    print("  | step (median a follow-up) | round trips | ms in all | ms waited on the main thread |")
    print("  |---|---|---|---|")
    for name, counts in sorted(steps.items()):
        count, total, main = (median(v[k] for v in counts) for k in range(3))
        print(f"  | {name} | {count:g} | {total:.0f} | {main:.0f} |")
    spans, trips = runs[-1]["invocation_spans"], runs[-1]["round_trips"]
    if len(spans) > 2:  # the last run's second invocation's round trips, raw: from the end of the first's time
        start, end, _ = spans[1]
        print("  the second invocation's round trips (ms from its start):")
        for a, b, thread, method, what in trips:
            if spans[0][2] <= a <= end:
                print(f"  {a - start:7.1f} {b - start:7.1f} {b - a:6.1f}  {thread[:12]:12} {method:6} {what}")


def _follow_ups(
    r: dict[str, Any], phases: dict[str, list[float]], steps: dict[str, list[tuple[int, float, float]]]
) -> None:
    """Each follow-up of one traced run whose time ran out: its phases and its round trips by step."""
    spans, trips = r["invocation_spans"], r["round_trips"]
    for i, (start, end, up) in enumerate(spans[1:-1], start=1):
        mine = [t for t in trips if start <= t[0] <= end]
        arrow = [t for t in mine if ".arrow" in t[4]]
        staged = [t for t in mine if "comp=block&" in t[4]]
        if not (arrow and staged and up):
            continue
        phase = phases.setdefault
        phase("start: to the first segment's download", []).append(arrow[0][0] - start)
        phase("start: to the first segment downloaded", []).append(arrow[0][1] - start)
        phase("start: to the first block's upload", []).append(staged[0][0] - start)
        phase("time up: to the last block landed (the drain)", []).append(max(t[1] for t in staged) - up)
        phase("time up: to the invocation's end", []).append(end - up)
        phase("the last block landed: to the invocation's end (its end records)", []).append(
            end - max(t[1] for t in staged)
        )
        phase("between invocations (the host's queue)", []).append(spans[i + 1][0] - end)
        phase("segments downloaded after the time ran out (read again by the next)", []).append(
            sum(1 for t in arrow if t[1] > up)
        )
        phase("the invocation", []).append(end - start)
        by_step: dict[str, list[tuple[float, float, str]]] = {}
        for a, b, thread, method, what in mine:
            by_step.setdefault(_step(method, what), []).append((a, b, thread))
        for name, done in by_step.items():
            on_main = sum(b - a for a, b, thread in done if thread == "MainThread")
            steps.setdefault(name, []).append((len(done), sum(b - a for a, b, _ in done), on_main))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
