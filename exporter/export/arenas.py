"""The worker process's malloc arenas: at most MALLOC_ARENAS (glibc), set when the export is first imported.

glibc gives each thread that allocates while another holds an arena an arena of its own, up to 8 per
core, and keeps what is freed in each for later use by that arena. An export's threads (the read's
downloads and decodes, the blocks' uploads, the notes) are new in every invocation, so a worker that
runs invocation after invocation (a resumed window, a catch-up) spread its blocks and batches over more
and more arenas, each keeping its share: a Parquet window resumed over 6 invocations peaked 1.2 x one
invocation. Two arenas hold the same work (the large buffers are Arrow's own pool, mimalloc), and the
peak stays that of one invocation (docs/benchmarks.md, "The resumed window's memory").

As the environment's MALLOC_ARENA_MAX would, but from the code, so that every host (Functions, the
local host, the benchmark) has it. It counts only before glibc has settled its limit (at its 9th arena):
set at import, before the export starts a thread. An explicit MALLOC_ARENA_MAX is left as it is.
"""

from __future__ import annotations

import ctypes
import os

MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit glibc's malloc arenas (True); False where the C library is not glibc or the environment chose."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


limit_arenas()
