"""Scheduled export of UCD events, as CSV files, into customers' cloud storage."""
import os as _os

# Arrow's allocator is chosen once, when pyarrow first allocates, from this variable. Its default,
# mimalloc, keeps freed pages in per-thread heaps: with segments decoded on several threads an
# export's peak RSS was ~50-65 MB higher than with jemalloc (bench/README.md). An explicit setting
# wins; exporter.ucd.store switches the Python-level pool too if pyarrow was imported before us.
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
