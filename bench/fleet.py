"""`python -m bench.fleet`: the scheduler's tick among 1,000, 10,000 and 100,000 integrations.

For each size it starts fresh in-memory Azurites, fills the integrations and their due index
entries straight into the tables (activations spread over an hour, so most are due later), and times
ticks at one-minute steps where the same 50 integrations are due at every size. Then a minute with
5,000 due. Storage calls are counted at the Azure SDK's transport, so they include every retry.

Table and Queue storage are separate services in Azure; Azurite serves both from one node process
and one heap, where a table of 100,000 entities slows every queue answer. So the tables are on one
Azurite and the queue on another (one connection string names both endpoints). The due query's own
time is reported per size too: Azurite answers a range query by scanning every entity of the table
(LokiJS `where`, node_modules/azurite/dist/src/table/persistence/LokiTableMetadataStore.js), where
Table Storage seeks the partition's key range; that scan is the part of a tick that grows with N here.

    python -m bench.fleet                          # 1k, 10k, 100k; bench-results/fleet.json
    python -m bench.fleet --sizes 500,2000 --burst 500 --out FILE   # the short form the tests run

docs/fleet.md explains the design and has the figures.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

from exporter.clock import ManualClock
from exporter.context import Context
from exporter.integrations.due import Snapshot, entry_key
from exporter.integrations.model import DestinationConfig, EventSelection, Integration, Status
from exporter.jobs import schedule
from exporter.local.devstorage import Azurite, connection_string, start_azurite
from exporter.secrets import new_key
from exporter.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
SETTLE = 120
PER_ACCOUNT = 100  # integrations filled per account partition (a transaction holds 100)
TICKS = 5  # timed ticks per size, a minute apart; the fastest is reported (the least disturbed by other load)


@dataclass
class Calls:
    """Requests the Azure SDK sends, counted at its transport."""

    count: int = 0
    lock: threading.Lock = threading.Lock()

    @contextmanager
    def counting(self) -> Iterator[None]:
        real = RequestsTransport.send

        def send(transport: RequestsTransport, request: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.count += 1
            return real(transport, request, **kwargs)

        RequestsTransport.send = send  # type: ignore[method-assign]
        try:
            yield
        finally:
            RequestsTransport.send = real  # type: ignore[method-assign]


def integration(account: str, n: int, due: datetime, sealed: str) -> Integration:
    """An hourly integration whose next window is due at `due` (activated one window plus settle before)."""
    activated = due - timedelta(hours=1, seconds=SETTLE)
    return Integration(
        account=account,
        id=f"{n:012x}",
        name=f"feed {n}",
        destination=DestinationConfig("azure_blob", "exports", "fleet/", sealed, "***"),
        events=(EventSelection("purchase", ("price",)),),
        attributes=(),
        frequency_hours=1,
        status=Status.ACTIVE,
        created_at=activated,
        updated_at=activated,
        activated_at=activated,
        due_key=entry_key(due, account, f"{n:012x}", 1),
        revision=1,
    )


def due_times(size: int, due_per_minute: int, minutes: int) -> list[datetime]:
    """The first `minutes` minutes have `due_per_minute` each; the rest are spread over the hour after."""
    times = [NOW + timedelta(minutes=m) for m in range(minutes) for _ in range(due_per_minute)]
    rest = size - len(times)
    start = NOW + timedelta(minutes=minutes)
    span = timedelta(hours=1) - timedelta(minutes=minutes)
    times += [start + span * (i + 1) / (rest + 1) for i in range(rest)]
    return times


def fill(ctx: Context, times: list[datetime]) -> None:
    """Integrations and their (confirmed) due entries, 100 to a transaction."""
    sealed = ctx.integrations.secrets.seal("not a real secret")  # once: sealing is not what is measured
    table, index = ctx.repo.table, ctx.repo.due
    for first in range(0, len(times), PER_ACCOUNT):
        account = f"tenant-{first // PER_ACCOUNT:06d}"
        chunk = [
            integration(account, first + i, due, sealed) for i, due in enumerate(times[first : first + PER_ACCOUNT])
        ]
        # The transaction's answer carries each entity's ETag, in order: no query (Azurite's scan the
        # whole table, which made filling 100,000 quadratic).
        answers = table.submit_transaction([("upsert", i.to_entity()) for i in chunk])
        etags = [answer["etag"] for answer in answers]
        index.table.submit_transaction(
            [("upsert", Snapshot.of(i, etag).entity(i.due_key)) for i, etag in zip(chunk, etags, strict=True)]
        )


def timed_ticks(ctx: Context, clock: ManualClock, calls: Calls, minutes: int) -> list[dict[str, float]]:
    out = []
    for m in range(minutes):
        clock.set(NOW + timedelta(minutes=m))
        before = calls.count
        started, cpu = time.perf_counter(), time.process_time()
        outcome = schedule(ctx)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        out.append({"seconds": elapsed, "cpu_seconds": cpu, "queued": outcome.queued, "calls": calls.count - before})
    return out


def due_query_seconds(ctx: Context, clock: ManualClock) -> float:
    """The due index's range query alone, at the last timed minute (fastest of 3)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        ctx.repo.due.due_by(clock.now())
        times.append(time.perf_counter() - started)
    return min(times)


def separate_services(tables: Azurite, queues: Azurite) -> str:
    """Blob and Table storage on one Azurite, Queue storage on another (see the module's docstring)."""
    blob, _, table = tables.ports
    return connection_string(blob, queues.ports[1], table)


def measure(size: int, due_per_minute: int, minutes: int) -> dict[str, Any]:
    azurite, queues = start_azurite(), start_azurite()
    try:
        tag = f"f{size}"
        settings = Settings(
            storage_connection=separate_services(azurite, queues),
            table_prefix=tag,
            queue_name=f"jobs-{tag}",
            ucd_container=f"ucd-{tag}",
            secret_key=new_key(),
            settle_seconds=SETTLE,
        )
        clock = ManualClock(NOW)
        ctx = Context.create(settings, clock)
        started = time.perf_counter()
        fill(ctx, due_times(size, due_per_minute, minutes))
        filled = time.perf_counter() - started
        calls = Calls()
        with calls.counting():
            ticks = timed_ticks(ctx, clock, calls, minutes)
        query = due_query_seconds(ctx, clock)
        queued = sum(t["queued"] for t in ticks)
        return {
            "integrations": size,
            "due_per_tick": due_per_minute,
            "fill_seconds": round(filled, 1),
            "ticks": ticks,
            "tick_seconds": min(t["seconds"] for t in ticks),
            "tick_cpu_seconds": min(t["cpu_seconds"] for t in ticks),
            "due_query_seconds": query,
            "calls_per_due": sum(t["calls"] for t in ticks) / max(1, queued),
            "all_queued": all(t["queued"] == due_per_minute for t in ticks),
        }
    finally:
        azurite.stop()
        queues.stop()


def run(sizes: list[int], due: int, burst: int, burst_size: int) -> dict[str, Any]:
    rows = [measure(size, due, TICKS) for size in sizes]
    burst_row = measure(burst_size, burst, 1)
    small, large = rows[0], rows[-1]
    ratio = large["tick_seconds"] / small["tick_seconds"]
    cpu_ratio = large["tick_cpu_seconds"] / small["tick_cpu_seconds"]
    calls = max(r["calls_per_due"] for r in [*rows, burst_row])
    targets = {
        f"tick({large['integrations']:,}) / tick({small['integrations']:,}) <= 1.5": ratio <= 1.5,
        f"a minute with {burst:,} due queued in <= 10 s": burst_row["tick_seconds"] <= 10 and burst_row["all_queued"],
        "storage calls per due integration <= 3": calls <= 3,
        "every due integration queued": all(r["all_queued"] for r in rows),
    }
    return {
        "sizes": rows,
        "burst": burst_row,
        "tick_ratio_largest_over_smallest": ratio,
        "tick_cpu_ratio_largest_over_smallest": cpu_ratio,
        "max_calls_per_due": calls,
        "targets": targets,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="integrations per run, comma-separated")
    p.add_argument("--due", type=int, default=50, help="integrations due in each timed minute (default 50)")
    p.add_argument("--burst", type=int, default=5000, help="integrations due in the burst minute (default 5,000)")
    p.add_argument("--burst-size", type=int, default=10_000, help="integrations in the burst run (default 10,000)")
    p.add_argument("--out", default="bench-results/fleet.json", help="where the JSON figures go")
    args = p.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result = run(sizes, args.due, args.burst, max(args.burst_size, args.burst))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for row in [*result["sizes"], result["burst"]]:
        print(
            f"{row['integrations']:>8,} integrations, {row['due_per_tick']:>5,} due: tick {row['tick_seconds']:.3f} s, "
            f"(CPU {row['tick_cpu_seconds']:.3f} s; the due query {row['due_query_seconds']:.3f} s), "
            f"{row['calls_per_due']:.2f} calls per due integration "
            f"(filled in {row['fill_seconds']} s)"
        )
    print("\ntargets")
    for name, ok in result["targets"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
