"""The worker process's memory between invocations: glibc's malloc arenas limited to MALLOC_ARENAS (set when
the export is first imported), and what an export freed given back to the system when it ends.

glibc gives each thread that allocates while the others hold theirs an arena of its own, up to 8 per
core, and keeps what is freed in each for that arena's later use; Arrow's pool (mimalloc) keeps freed
pages too. An export's threads (the read's downloads and decodes, the blocks' uploads, the notes) are
new in every invocation, so a worker running invocation after invocation (a resumed window, a
catch-up) spread its blocks and batches over more and more arenas, each keeping its share: a Parquet
window resumed over 4-7 invocations peaked 1.2-1.3 x one invocation. With two arenas, and each
export's freed memory given back (`release_freed`), it peaks 1.0-1.05 x (docs/benchmarks.md, "The
resumed window's memory"); either alone left 1.05-1.13 x or did not help.

The limit is set as the environment's MALLOC_ARENA_MAX would set it, but from the code, so that every
host (Functions, the local host, the benchmark) has it. It counts only before glibc has settled its
limit (at its 9th arena): set at import, before the export starts a thread. An explicit
MALLOC_ARENA_MAX is left as it is.
"""

from __future__ import annotations

import ctypes
import os

import pyarrow as pa

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


def release_freed() -> None:
    """Give what an export freed back to the system: Arrow's pool's cached pages, and every arena's free memory."""
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


limit_arenas()
