"""Where a window's file goes (pure): its name, and the prefix it is put under.

The one place that names files: the engine, the worker's run records, the poison record and every
destination's test file use these functions (docs/architecture.md, "The export file").
"""

from __future__ import annotations

from ..windows import Window

EXPORT_TYPE = "events"
MANIFEST_SUFFIX = ".manifest.json"


def file_name(account: str, integration_id: str, window: Window, extension: str = "csv") -> str:
    """`{account}_{events}_{integration_id}_{start_unix}_{end_unix}.{extension}`: the same window, the same name.

    The extension is the file's format (`csv`, `csv.gz`, `parquet`, `jsonl.gz`); the rest is the product page's name.
    """
    return f"{account}_{EXPORT_TYPE}_{integration_id}_{window.start_unix}_{window.end_unix}.{extension}"


def join_prefix(prefix: str, name: str) -> str:
    """Join with exactly one '/', whether or not the prefix ends in one; an empty prefix is the root."""
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def window_path(prefix: str, account: str, integration_id: str, window: Window, extension: str = "csv") -> str:
    """The path of a window's file under the destination's prefix."""
    return join_prefix(prefix, file_name(account, integration_id, window, extension))


def manifest_path(file_path: str) -> str:
    """`{file name}.manifest.json`, beside the file it describes."""
    return file_path + MANIFEST_SUFFIX
