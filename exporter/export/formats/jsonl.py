"""JSON Lines, gzipped: one object per stored event, the CSV row's fields in its order, built column-wise.

Values: null for an empty cell, numeric parameters (exporter/export/formats/types.py) as JSON numbers
(the stored text, which the UCD wrote as JSON), everything else as a JSON string of the CSV's text
(so `timestamp` is `2026-11-28T10:00:00.000Z` and nested values are JSON text, as in the CSV).
Each batch becomes one string array of whole lines by Arrow compute kernels, with no Python per row.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from ..csv_writer import Writable
from ..plan import ColumnPlan
from .base import FileFormat, Format
from .compress import GzipMarks
from .types import ARROW_TYPES, NUMERIC, ColumnTypes

# JSON must escape the quote, the backslash and U+0000..U+001F; the short forms are json.dumps's own.
SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
CONTROL = "[\\x00-\\x1f]"


def json_string(column: pa.Array) -> pa.Array:
    """Each value as a JSON string literal (null stays null)."""
    escaped = pc.replace_substring(column, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    if pc.any(pc.match_substring_regex(escaped, CONTROL)).as_py():  # rare: scan again only then
        for code in range(0x20):
            escaped = pc.replace_substring(escaped, chr(code), SHORT_ESCAPES.get(code, f"\\u{code:04x}"))
    return pc.binary_join_element_wise('"', escaped, '"', "")


def json_number(column: pa.Array, kind: str) -> pa.Array:
    """A numeric column's stored text, which is already a JSON number; cast first, so any other text raises."""
    pc.cast(column, ARROW_TYPES[kind])
    return column


def json_lines(batch: pa.RecordBatch, types: ColumnTypes) -> pa.Array:
    """A projected batch → one string per row: `{"event_id":"…",…}` and a newline."""
    parts: list[pa.Array | str] = []
    for i, ((name, kind), column) in enumerate(zip(types.columns, batch.columns)):
        parts.append(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":")
        value = json_number(column, kind) if kind in NUMERIC else json_string(column)
        parts.append(pc.fill_null(value, "null"))
    parts.append("}\n")
    return pc.binary_join_element_wise(*parts, "")


def write_lines(lines: pa.Array, sink: Writable) -> None:
    """The lines' bytes as they lie in the array's data buffer: one write, no copy per row."""
    if len(lines) == 0:
        return
    _validity, offsets, data = lines.buffers()
    bounds = memoryview(offsets).cast("i")  # a string array's int32 offsets
    sink.write(memoryview(data)[bounds[lines.offset] : bounds[lines.offset + len(lines)]])


class JsonLines:
    """One JSON object per stored event (no header: JSON Lines has none)."""

    def __init__(self, plan: ColumnPlan, types: ColumnTypes, sink: Writable, header: bool):
        self._types = types
        self._sink = sink

    def write(self, batch: pa.RecordBatch) -> None:
        write_lines(json_lines(batch, self._types), self._sink)

    def close(self) -> None:
        pass


JSONL_GZ = FileFormat(Format.JSONL_GZ, typed=True, rows=JsonLines, cuts=GzipMarks, content_type="application/gzip")
