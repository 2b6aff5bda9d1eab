"""Scheduled export of UCD events, as CSV files, into customers' cloud storage."""

import os as _os
import sys as _sys

# Arrow's allocator is chosen once, when pyarrow first allocates, from this variable. Its default,
# mimalloc, keeps freed pages in per-thread heaps: with segments decoded on several threads an
# export's peak RSS was ~50-65 MB higher than with jemalloc (bench/README.md). An explicit setting wins.
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def _prefer_jemalloc() -> None:
    """If pyarrow was imported before us, the variable may come too late: route at least the
    pyarrow-level allocations (Parquet decode, CSV) to jemalloc. Otherwise pyarrow is not imported here."""
    if "pyarrow" not in _sys.modules or _os.environ["ARROW_DEFAULT_MEMORY_POOL"] != "jemalloc":
        return
    pa = _sys.modules["pyarrow"]
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except (NotImplementedError, AttributeError):
        pass  # a build without jemalloc (e.g. Windows wheels): keep the default


_prefer_jemalloc()
