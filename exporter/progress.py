"""Progress on long work when a person watches (a TTY on stderr); silent otherwise, so JSON stays clean."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._started = time.monotonic()

    def __enter__(self) -> "Progress":
        self._draw()
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._started
        if self.total:
            width = 30
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s"
        else:
            text = f"\r{self.label}: {self.done} {elapsed:5.1f}s"
        self.stream.write(text)
        self.stream.flush()

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def runs_table(runs: list[dict[str, Any]]) -> str:
    """The run history as a fixed-width table, newest first."""
    from datetime import datetime, timezone

    def when(unix: int) -> str:
        return datetime.fromtimestamp(unix, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")

    headers = ["window start (UTC)", "end", "status", "rows", "bytes", "ms", "tries", "file / error"]
    rows = [
        [when(r["window_start"]), when(r["window_end"]), r["status"], str(r["rows"]), str(r["bytes"]),
         str(r["duration_ms"]), str(r["attempts"]), r["error"] or r["file"]]
        for r in runs
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines) + "\n"
