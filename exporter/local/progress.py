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

    def __enter__(self) -> Progress:
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
