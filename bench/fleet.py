"""`python -m bench.fleet`: the scheduler's tick among 1,000, 10,000 and 100,000 integrations.

Every size gets its own in-memory Azurite for its tables, all up at once, filled with the
integrations and their due index entries straight into the tables (activations spread over an hour,
so most are due later). Then the ticks are timed round-robin (1k, 10k, 100k, 1k, ...), TICKS per
size at one-minute steps, the same 50 integrations newly due in each minute at every size: whatever
the shared machine does meanwhile lands on every size alike instead of on whichever ran last (each
size measured after the other put their drift into the ratio). The fastest and the median tick are
reported per size. Every size sees the same sequence: an entry leased in minute m stays in the due
range, counted `already_queued`, until its lease runs out (10 minutes), so the k-th tick reads 50 k
entries at every size. Then, on fresh Azurites, a minute with 5,000 due. Storage calls are counted at
the Azure SDK's transport, so they include every retry.

Table and Queue storage are separate services in Azure; Azurite serves both from one node process
and one heap, where a table of 100,000 entities slows every queue answer. So the tables are on one
Azurite per size and the queues (one per size) on another, shared. The due query's own time is
reported per size too: Azurite answers a range query by scanning every entity of the table (LokiJS
`where`, node_modules/azurite/dist/src/table/persistence/LokiTableMetadataStore.js), where Table
Storage seeks the partition's key range; that scan is the part of a tick that grows with N here.

The bench process collects and freezes its garbage once the fill is done (`gc.freeze`) and collects
again before each timed tick, so no tick pays for the fill's or another tick's garbage; the product
does no such thing and needs not: a tick's own garbage is its own.

    python -m bench.fleet                          # 1k, 10k, 100k; bench-results/fleet.json
    python -m bench.fleet --sizes 500,2000 --burst 500 --out FILE   # the short form the tests run

docs/fleet.md explains the design and has the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient

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
TICKS = 9  # timed ticks per size, a minute apart, round-robin over the sizes; the fastest and the median are reported
QUERIES = 5  # the due query alone, timed round-robin too after the ticks
FILL_THREADS = 2  # the fill's transactions at once (untimed: only the ticks are measured)


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
    """Integrations and their (confirmed) due entries, 100 to a transaction, a few transactions at once."""
    sealed = ctx.integrations.secrets.seal("not a real secret")  # once: sealing is not what is measured
    table, index = ctx.repo.table, ctx.repo.due

    def account(first: int) -> None:
        name = f"tenant-{first // PER_ACCOUNT:06d}"
        chunk = [integration(name, first + i, due, sealed) for i, due in enumerate(times[first : first + PER_ACCOUNT])]
        # The transaction's answer carries each entity's ETag, in order: no query (Azurite's scan the
        # whole table, which made filling 100,000 quadratic).
        answers = _upserted(table, [i.to_entity() for i in chunk])
        etags = [answer["etag"] for answer in answers]
        _upserted(index.table, [Snapshot.of(i, etag).entity(i.due_key) for i, etag in zip(chunk, etags, strict=True)])

    with ThreadPoolExecutor(FILL_THREADS) as pool:
        list(pool.map(account, range(0, len(times), PER_ACCOUNT)))


def _upserted(table: TableClient, entities: list[dict[str, Any]]) -> list[Any]:
    """One transaction of upserts (idempotent), sent again when a busy Azurite drops the connection."""
    for attempt in range(3):
        try:
            return list(table.submit_transaction([("upsert", entity) for entity in entities]))
        except (ServiceRequestError, ServiceResponseError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass
class Fleet:
    """One size's integrations on their own tables' Azurite, and what its ticks measured."""

    size: int
    due_per_minute: int
    ctx: Context
    clock: ManualClock
    tables: Azurite
    fill_seconds: float
    ticks: list[dict[str, float]] = field(default_factory=list)
    queries: list[float] = field(default_factory=list)

    def tick(self, minute: int, calls: Calls) -> None:
        self.clock.set(NOW + timedelta(minutes=minute))
        gc.collect()  # untimed: no tick pays for garbage that is not its own
        before = calls.count
        started, cpu = time.perf_counter(), time.process_time()
        outcome = schedule(self.ctx)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        self.ticks.append(
            {
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "queued": outcome.queued,
                "already_queued": outcome.already_queued,
                "calls": calls.count - before,
            }
        )

    def query(self) -> None:
        """The due index's range query alone, at the last timed minute."""
        gc.collect()
        started = time.perf_counter()
        self.ctx.repo.due.due_by(self.clock.now())
        self.queries.append(time.perf_counter() - started)

    def row(self) -> dict[str, Any]:
        seconds = [t["seconds"] for t in self.ticks]
        cpu = [t["cpu_seconds"] for t in self.ticks]
        queued = sum(t["queued"] for t in self.ticks)
        return {
            "integrations": self.size,
            "due_per_tick": self.due_per_minute,
            "fill_seconds": round(self.fill_seconds, 1),
            "tables_azurite_rss_mb": rss_mb(self.tables),
            "ticks": self.ticks,
            "tick_seconds": min(seconds),
            "tick_median_seconds": statistics.median(seconds),
            "tick_cpu_seconds": min(cpu),
            "tick_cpu_median_seconds": statistics.median(cpu),
            "due_query_seconds": min(self.queries),
            "due_query_median_seconds": statistics.median(self.queries),
            "calls_per_due": sum(t["calls"] for t in self.ticks) / max(1, queued),
            "all_queued": all(t["queued"] == self.due_per_minute for t in self.ticks),
        }


def rss_mb(azurite: Azurite) -> float:
    """The Azurite process's resident memory (Linux /proc), 0 where it cannot be read."""
    try:
        status = Path(f"/proc/{azurite.process.pid}/status").read_text()
    except OSError:
        return 0.0
    kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return round(kb / 1024, 1)


def separate_services(tables: Azurite, queues: Azurite) -> str:
    """Blob and Table storage on one Azurite, Queue storage on another (see the module's docstring)."""
    blob, _, table = tables.ports
    return connection_string(blob, queues.ports[1], table)


def start_fleet(size: int, due_per_minute: int, minutes: int, queues: Azurite) -> Fleet:
    tables = start_azurite()
    try:
        tag = f"f{size}"
        settings = Settings(
            storage_connection=separate_services(tables, queues),
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
        return Fleet(size, due_per_minute, ctx, clock, tables, time.perf_counter() - started)
    except BaseException:
        tables.stop()
        raise


def measure(sizes: list[int], due_per_minute: int, minutes: int) -> list[dict[str, Any]]:
    """Every size up at once, their ticks (then their due queries) timed round-robin."""
    queues = start_azurite()
    fleets: list[Fleet] = []
    try:
        for size in sizes:
            fleets.append(start_fleet(size, due_per_minute, minutes, queues))
        gc.collect()
        gc.freeze()  # the fill's survivors are never scanned again by a collection inside a tick
        calls = Calls()
        with calls.counting():
            for minute in range(minutes):
                for fleet in fleets:
                    fleet.tick(minute, calls)
        for _ in range(QUERIES):
            for fleet in fleets:
                fleet.query()
        return [fleet.row() for fleet in fleets]
    finally:
        gc.unfreeze()
        for fleet in fleets:
            fleet.tables.stop()
        queues.stop()


def run(sizes: list[int], due: int, burst: int, burst_size: int) -> dict[str, Any]:
    rows = measure(sizes, due, TICKS)
    [burst_row] = measure([burst_size], burst, 1)
    small, large = rows[0], rows[-1]
    ratio = large["tick_seconds"] / small["tick_seconds"]
    median_ratio = large["tick_median_seconds"] / small["tick_median_seconds"]
    # Each round's two ticks ran moments apart: their ratio cancels what drifts between rounds.
    paired = statistics.median(
        big["seconds"] / little["seconds"] for big, little in zip(large["ticks"], small["ticks"], strict=True)
    )
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
        "tick_median_ratio_largest_over_smallest": median_ratio,
        "tick_paired_ratio_median": paired,
        "tick_cpu_ratio_largest_over_smallest": cpu_ratio,
        "max_calls_per_due": calls,
        "bench_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
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
            f"{row['integrations']:>8,} integrations, {row['due_per_tick']:>5,} due: "
            f"tick {row['tick_seconds']:.3f} s (median {row['tick_median_seconds']:.3f}), "
            f"CPU {row['tick_cpu_seconds']:.3f} s (median {row['tick_cpu_median_seconds']:.3f}), "
            f"the due query {row['due_query_seconds']:.3f} s (median {row['due_query_median_seconds']:.3f}), "
            f"{row['calls_per_due']:.2f} calls per due integration "
            f"(filled in {row['fill_seconds']} s; tables' Azurite {row['tables_azurite_rss_mb']:,.0f} MB)"
        )
    print(
        f"\ntick ratio, largest over smallest: {result['tick_ratio_largest_over_smallest']:.2f} (fastest), "
        f"{result['tick_median_ratio_largest_over_smallest']:.2f} (median), "
        f"{result['tick_paired_ratio_median']:.2f} (median of each round's), "
        f"{result['tick_cpu_ratio_largest_over_smallest']:.2f} (CPU); bench process {result['bench_max_rss_mb']:,.0f} MB"
    )
    print("\ntargets")
    for name, ok in result["targets"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
