"""File formats of a window's file: each a `FileFormat` (formats/base.py) of a rows writer and its cuts.

The runner picks the format by the integration's `format`: its `rows` writer takes the window's Arrow
batches (projected by the column plan, every value the CSV's text) and writes bytes to the block sink,
a bounded amount at a time; its cuts (`FileFormat.begin`) say where the file's blocks may end and write
its end (a gzip member's trailer, a Parquet footer). A new format is a module of both and one line in
FORMATS. `FORMAT_NAMES` is the one list of formats the API, the CLI and the console offer
(docs/architecture.md, "The export file").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..naming import MANIFEST_SUFFIX
from ..plan import Selection
from .base import DEFAULT_FORMAT, FileFormat, Format
from .csv import CSV, CSV_GZ
from .jsonl import JSONL_GZ
from .parquet_footer import PARQUET
from .types import with_param_types

# The one registration of every format: its name is offered by the API, the CLI and the console from here.
FORMATS: dict[str, FileFormat] = {f.name: f for f in (CSV, CSV_GZ, PARQUET, JSONL_GZ)}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)


def file_format(name: str) -> FileFormat:
    """The encoder of a format name (one of FORMAT_NAMES)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a file format") from None


MANIFEST_CONTENT_TYPE = "application/json"
OTHER_CONTENT_TYPE = "application/octet-stream"  # a split window's temporary part objects


def content_type_of(path: str) -> str:
    """The content type a destination commits the file at `path` with, by its name: the format's own
    (the longest extension that matches, so `x.csv.gz` is gzip), `application/json` for a manifest."""
    if path.endswith(MANIFEST_SUFFIX):
        return MANIFEST_CONTENT_TYPE
    matching = [f for f in FORMATS.values() if path.endswith("." + f.extension)]
    return max(matching, key=lambda f: len(f.extension)).content_type if matching else OTHER_CONTENT_TYPE


def fix_types(selection: Selection, catalog: Callable[[], Mapping[str, object]]) -> Selection:
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
