"""One row of the benchmark's printed tables: rows, MB, wall seconds, throughput, peak RSS and CPU."""

from __future__ import annotations

from typing import Any

MB = 1_000_000


def row(label: str, r: dict[str, Any] | None) -> str:
    if r is None:
        return f"{label:<44} {'(skipped)':>10}"
    rows = r.get("rows")
    nbytes = r.get("bytes")
    s = r["seconds"]
    rps = f"{rows / s:,.0f}" if rows else "-"
    mbs = f"{nbytes / MB / s:,.1f}" if nbytes else "-"
    return (
        f"{label:<44} {rows or 0:>10,} {(nbytes or 0) / MB:>8.1f} {s:>8.2f} {rps:>11} {mbs:>8} "
        f"{r.get('peak_rss_mb', 0):>8.0f} {r.get('cpu_seconds', 0):>6.2f}"
    )
