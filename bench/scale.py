"""The export rows of windows of any size (bench/README.md): one large window exported in one invocation,
over several invocations (a time budget that runs out), and split in parts over two worker processes;
as Parquet, in one invocation and over several.

Each function is a measurement kind of `python -m bench.measure` (registered in `bench/measure.py`);
`scale_rows` in `bench/__main__.py` runs them and computes the ratios.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from exporter.clock import ManualClock, from_unix
from exporter.context import Context
from exporter.destinations import gcs, open_destination
from exporter.jobs import ExportJob, process_job
from exporter.local.host import drain
from exporter.notifications.sender import drain_notifications
from exporter.settings import Settings

from . import data
from .process import rss_mb

ROOT = Path(__file__).resolve().parent.parent


class RunningClock:
    """Real time passing from a chosen instant: the worker's time budget runs out for real."""

    def __init__(self, start: datetime):
        self._start, self._t0 = start, time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0)


class Counting:
    """The real destination, counting the bytes staged (a block staged twice counts twice)."""

    def __init__(self, inner, tally: dict[str, int]):
        self.inner, self.tally = inner, tally
        self.prefix = getattr(inner, "prefix", "")
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def place_part(self, split, part):
        """A part staged in the service's own storage (GCS) is counted there too."""
        placement = self.inner.place_part(split, part)
        if placement.staging is None:
            return placement
        return dataclasses.replace(placement, staging=Counting(placement.staging, self.tally))

    def stage_block(self, path, index, block):
        state = self.inner.stage_block(path, index, block)
        with self._lock:
            self.tally["staged_bytes"] += len(block)
            self.tally["blocks"] += 1
        return state


SETTINGS_FROM_SPEC = {  # Settings field: the spec's key
    "storage_connection": "connection",
    "table_prefix": "table_prefix",
    "queue_name": "queue",
    "ucd_container": "ucd_container",
    "secret_key": "secret_key",
}


def settings_of(spec: dict[str, Any], **changes: Any) -> Settings:
    """The app's settings for a benchmark spec (its storage, tables, queue and key), with `changes`."""
    return Settings(**{name: spec[key] for name, key in SETTINGS_FROM_SPEC.items()}, **changes)


def _context(spec: dict[str, Any], clock, tally: dict[str, int], **changes: Any) -> Context:
    """A context whose destinations count what they stage."""
    ctx = Context.create(settings_of(spec, **changes), clock)
    ctx.open_destination = lambda *a: Counting(open_destination(*a), tally)
    return ctx


def _integration(ctx: Context, spec: dict[str, Any], clock: ManualClock, label: str) -> str:
    """A 1-hour integration of the big account activated at T0: its first window holds the big hour.

    Its destination is the spec's `destination` body (GCS, say), else the benchmark's Azurite container;
    its format the spec's `format` (default `csv`).
    """
    clock.set(data.T0)
    azure = {"type": "azure_blob", "connection_string": spec["connection"], "container": spec["out_container"]}
    body = {
        "name": f"bench {label}",
        "destination": {**spec.get("destination", azure), "prefix": f"bench-{label}/"},
        "events": data.SELECTION_EVENTS,
        "attributes": data.SELECTION_ATTRIBUTES,
        "frequency_hours": 1,
        "format": spec.get("format", "csv"),
        "status": "active",
    }
    return ctx.integrations.create(spec["big_account"], body)["id"]


def _due(ctx: Context) -> datetime:
    return data.T0 + timedelta(hours=1, seconds=ctx.settings.settle_seconds + 1)


def _finish(ctx: Context, spec: dict[str, Any], iid: str, seconds: float, tally: dict[str, int], **more: Any):
    """The window's run record and file, and what was staged to make it; the integration deleted.

    The file's SHA-256 only in the Azurite container: the caller reads another destination's file itself.
    """
    run = ctx.runs.get(spec["big_account"], iid, int(data.T0.timestamp()))
    if run is None or run.status != "exported":
        raise SystemExit(f"the big window was not exported: {run}")
    ctx.integrations.delete(spec["big_account"], iid)
    return {
        "seconds": seconds,
        "rows": run.rows,
        "bytes": run.bytes,
        "file": run.file,
        "sha256": None if "destination" in spec else _sha256(spec, run.file),
        "staged_bytes": tally["staged_bytes"],
        "restaged_bytes": tally["staged_bytes"] - run.bytes,
        "blocks_staged": tally["blocks"],
        "attempts": run.attempts,
        "peak_rss_mb": rss_mb(),  # this process's own high-water mark (VmHWM), not its parent's
        **more,
    }


def _sha256(spec: dict[str, Any], name: str) -> str:
    blob = BlobServiceClient.from_connection_string(spec["connection"]).get_blob_client(spec["out_container"], name)
    digest = hashlib.sha256()
    for chunk in blob.download_blob(max_concurrency=4).chunks():
        digest.update(chunk)
    return digest.hexdigest()


def big_export_once(spec: dict[str, Any]) -> dict[str, Any]:
    """The big window in one invocation (the budget never runs out)."""
    clock = ManualClock(data.T0)
    tally = {"staged_bytes": 0, "blocks": 0}
    ctx = _context(spec, clock, tally, max_seconds_per_run=24 * 3600)
    iid = _integration(ctx, spec, clock, "once")
    clock.set(_due(ctx))
    t0, cpu0 = time.perf_counter(), time.process_time()
    outcome = process_job(ctx, ExportJob(spec["big_account"], iid).to_message())
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if outcome.exported != 1:
        raise SystemExit(f"expected one exported window, got {outcome.to_json()}")
    return _finish(ctx, spec, iid, seconds, tally, invocations=1, cpu_seconds=cpu)


def big_export_resumed(spec: dict[str, Any]) -> dict[str, Any]:
    """The big window with a time budget (`budget_seconds`) that runs out: follow-ups continue it."""
    setup = ManualClock(data.T0)
    tally = {"staged_bytes": 0, "blocks": 0}
    ctx = _context(spec, setup, tally, max_seconds_per_run=spec["budget_seconds"])
    iid = _integration(ctx, spec, setup, "resumed")
    ctx.clock = RunningClock(_due(ctx))
    ctx.storage.queue().send_message(ExportJob(spec["big_account"], iid).to_message())
    outcomes: list[Any] = []
    profiler = None
    if spec.get("profile"):  # `python -m bench --profile`: where the invocations' time goes
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    with _traced_invocations() if spec.get("trace") else contextlib.nullcontext() as traced:
        t0, cpu0 = time.perf_counter(), time.process_time()
        done = drain(ctx, on_result=outcomes.append, max_jobs=10_000)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profiler is not None:
        profiler.stop()
        Path(spec["profile"]).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    if done["windows_exported"] != 1 or done["failed_deliveries"]:
        raise SystemExit(f"the resumed export did not finish cleanly: {done}")
    more = traced.relative_to(t0) if traced is not None else {}
    return _finish(ctx, spec, iid, seconds, tally, invocations=len(outcomes), cpu_seconds=cpu, **more)


class _Invocations:
    """`--trace` of the resumed window (bench/start_cost.py): each invocation's start, end and the moment its
    time ran out (its first `out_of_time()` that answered True), and every HTTP round trip, perf_counter."""

    def __init__(self, trips: list[tuple[float, float, str, str, str]]):
        self.trips = trips
        self.spans: list[list[float]] = []  # [start, end, time up (0: never)]

    def relative_to(self, t0: float) -> dict[str, Any]:
        ms = lambda t: round((t - t0) * 1000, 1) if t else 0.0  # noqa: E731
        return {
            "invocation_spans": [[ms(t) for t in span] for span in self.spans],
            "round_trips": [(ms(a), ms(b), *rest) for a, b, *rest in self.trips if a >= t0],
        }


@contextlib.contextmanager
def _traced_invocations() -> Iterator[_Invocations]:
    """Times each `process_job` of the drain and its time bound, and every HTTP round trip, while it lasts."""
    from urllib3.connectionpool import HTTPConnectionPool

    from exporter.jobs import worker
    from exporter.local import host

    from .measure import _traced_round_trips

    process, bound, urlopen = host.process_job, worker.time_bound, HTTPConnectionPool.urlopen
    seen = _Invocations(_traced_round_trips())

    def timed_job(*args: Any, **kwargs: Any) -> Any:
        seen.spans.append([time.perf_counter(), 0.0, 0.0])
        try:
            return process(*args, **kwargs)
        finally:
            seen.spans[-1][1] = time.perf_counter()

    def noted_bound(ctx: Context):
        out_of_time = bound(ctx)

        def asked() -> bool:
            up = out_of_time()
            if up and not seen.spans[-1][2]:
                seen.spans[-1][2] = time.perf_counter()
            return up

        return asked

    host.process_job, worker.time_bound = timed_job, noted_bound
    try:
        yield seen
    finally:
        host.process_job, worker.time_bound = process, bound
        HTTPConnectionPool.urlopen = urlopen  # type: ignore[method-assign]


def big_export_split(spec: dict[str, Any]) -> dict[str, Any]:
    """The big window split in `parts` parts, exported by `workers` worker processes at once."""
    _gcs_split_windows(spec)
    clock = ManualClock(data.T0)
    tally = {"staged_bytes": 0, "blocks": 0}
    ctx = _context(spec, clock, tally)
    iid = _integration(ctx, spec, clock, "split")
    clock.set(_due(ctx))
    segments = ctx.ucd.segments(spec["big_account"], data.T0, data.T0 + timedelta(hours=1))
    split_bytes = sum(ref.size for ref in segments) // spec["parts"] + 1
    ctx = _context(spec, clock, tally, split_bytes=split_bytes)
    t0, cpu0 = time.perf_counter(), time.process_time()
    planned = process_job(ctx, ExportJob(spec["big_account"], iid).to_message())
    planner_cpu = time.process_time() - cpu0
    workers = [_worker(spec, split_bytes, i) for i in range(spec["workers"])]
    results = [_wait(w) for w in workers]
    seconds = time.perf_counter() - t0
    for r in results:
        tally["staged_bytes"] += r["staged_bytes"]
        tally["blocks"] += r["blocks"]
    digest_seconds = _read_back(ctx, spec, iid)
    return _finish(
        ctx,
        spec,
        iid,
        seconds,
        tally,
        parts=spec["parts"],
        workers=spec["workers"],
        plan=planned.reason,
        jobs_per_worker=[r["jobs"] for r in results],
        cpu_seconds=planner_cpu + sum(r["cpu_seconds"] for r in results),  # the planner's and every worker's
        relay_seconds=sum(r["relay_seconds"] for r in results),  # GCS: the parts relayed into the session
        digest_seconds=digest_seconds,  # after the commit: the file read back for its SHA-256
    )


def _read_back(ctx: Context, spec: dict[str, Any], iid: str) -> float:
    """The split window's digest step (exporter/notifications/digest.py), timed: its file streamed back through
    the destination's `read_file` and its SHA-256 written on the run record, after the window advanced."""
    t0 = time.perf_counter()
    drain_notifications(ctx)
    seconds = time.perf_counter() - t0
    run = ctx.runs.get(spec["big_account"], iid, int(data.T0.timestamp()))
    if run is None or not run.sha256:
        raise SystemExit("the split window's SHA-256 was not read back")
    return seconds


def _worker(spec: dict[str, Any], split_bytes: int, i: int) -> tuple[subprocess.Popen, Path]:
    path = Path(spec["workdir"]) / f"split-worker-{i}.json"
    path.write_text(json.dumps({**spec, "kind": "split_worker", "split_bytes": split_bytes}))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.measure", str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    return process, path


def _wait(worker: tuple[subprocess.Popen, Path]) -> dict[str, Any]:
    process, _ = worker
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a split worker failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def split_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One worker process: the queue's part jobs until none is left."""
    _gcs_split_windows(spec)
    tally = {"staged_bytes": 0, "blocks": 0}
    clock = ManualClock(from_unix(_due_unix(spec)))
    ctx = _context(spec, clock, tally, split_bytes=spec["split_bytes"])
    relay_seconds = _timing_the_relay()
    t0, cpu0 = time.perf_counter(), time.process_time()
    done = drain(ctx, max_jobs=10_000)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - cpu0,
        "jobs": done["jobs"],
        "relay_seconds": relay_seconds[0],
        **tally,
    }


def _gcs_split_windows(spec: dict[str, Any]) -> None:
    """`gcs_split`: GCS windows split and relayed, against the planner's rule (exported whole) when false."""
    gcs.GcsDestination.split_windows = bool(spec.get("gcs_split"))  # this process is the benchmark's own


def _timing_the_relay() -> list[float]:
    """A split GCS window's relay (exporter/destinations/gcs_relay.py), timed in this worker process: [seconds so far]."""
    spent = [0.0]
    relay = gcs.relay

    def timed(*args: Any, **kwargs: Any) -> bool:
        t0 = time.perf_counter()
        try:
            return relay(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    gcs.relay = timed  # gcs.py's name for it; this process is the benchmark's own worker: nothing else runs in it
    return spent


def _due_unix(spec: dict[str, Any]) -> float:
    return (data.T0 + timedelta(hours=1, seconds=settings_of(spec).settle_seconds + 1)).timestamp()


KINDS = {
    "big_export_once": big_export_once,
    "big_export_resumed": big_export_resumed,
    "big_export_split": big_export_split,
    "split_worker": split_worker,
}
