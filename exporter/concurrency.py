"""Optimistic concurrency: the one retry loop for ETag-guarded read-modify-write.

Every entity the app changes concurrently (integration state, profiles, catalog entries) is
written only if nobody changed it since it was read. A lost race re-reads and tries again, a
bounded number of times, then gives up with a TransientError the caller's caller can retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .errors import TransientError

Read = TypeVar("Read")
Result = TypeVar("Result")


def retry_on_conflict(
    current: Read,
    attempt: Callable[[Read], Result],
    reread: Callable[[Read], Read],
    *,
    conflicts: tuple[type[BaseException], ...],
    what: str,
    attempts: int = 10,
) -> Result:
    """`attempt(current)`; on one of `conflicts`, `current = reread(current)` and again.

    `reread` gets the stale value, so it may refuse to go on (raise) when the race was lost to a
    change that must not be overwritten. After `attempts` lost races: TransientError naming `what`.
    """
    for _ in range(attempts):
        try:
            return attempt(current)
        except conflicts:
            current = reread(current)
    raise TransientError(f"{what} keeps changing concurrently; retry")
