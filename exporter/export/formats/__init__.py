"""File formats of a window's file: one encoder per format behind one interface (`FileFormat.encode`).

The runner picks the encoder by the integration's `format`; each takes the window's Arrow batches
(projected by the column plan, every value the CSV's text) and writes bytes to the block sink, a
bounded amount at a time. `FORMAT_NAMES` is the one list of formats the API, the CLI and the console
offer (docs/architecture.md, "The export file").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..naming import MANIFEST_SUFFIX
from ..plan import Selection
from .base import DEFAULT_FORMAT, FileFormat, Format
from .csv import CSV, CSV_GZ
from .jsonl import JSONL_GZ
from .parquet import PARQUET
from .types import with_param_types

FORMATS: dict[Format, FileFormat] = {f.name: f for f in (CSV, CSV_GZ, PARQUET, JSONL_GZ)}
FORMAT_NAMES: tuple[str, ...] = tuple(f.value for f in Format)


def file_format(name: str) -> FileFormat:
    """The encoder of a format name (one of FORMAT_NAMES)."""
    return FORMATS[Format(name)]


MANIFEST_CONTENT_TYPE = "application/json"
OTHER_CONTENT_TYPE = "application/octet-stream"  # a split window's temporary part objects


def content_type_of(path: str) -> str:
    """The content type a destination commits the file at `path` with, by its name: the format's own
    (the longest extension that matches, so `x.csv.gz` is gzip), `application/json` for a manifest."""
    if path.endswith(MANIFEST_SUFFIX):
        return MANIFEST_CONTENT_TYPE
    matching = [f for f in FORMATS.values() if path.endswith("." + f.extension)]
    return max(matching, key=lambda f: len(f.extension)).content_type if matching else OTHER_CONTENT_TYPE


def fix_types(selection: Selection, catalog: Callable[[], Mapping[str, Any]]) -> Selection:
    """The selection with its numeric parameters' types fixed from `catalog()` if its file needs them and
    has none yet; called before a window's run record is written, so retries and replays keep them."""
    return with_param_types(selection, file_format(selection.format).typed, catalog)


__all__ = [
    "DEFAULT_FORMAT",
    "FORMATS",
    "FORMAT_NAMES",
    "FileFormat",
    "Format",
    "content_type_of",
    "file_format",
    "fix_types",
]
