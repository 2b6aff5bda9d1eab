"""Progress on long work when a person watches (a TTY on stderr); silent otherwise, so JSON stays clean.

The bar itself is tqdm's; this keeps the callers' small interface (a label, an optional total, `advance`).
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        # A total of 0 means "unknown" to the callers (nothing due): tqdm then counts without a bar.
        self._bar = tqdm(desc=label, total=total or None, file=self.stream, disable=not self.enabled, leave=True)

    def __enter__(self) -> Progress:
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
