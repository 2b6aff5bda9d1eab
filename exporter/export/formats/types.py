"""The columns' types of a window file: the fixed columns', each parameter's by the UCD catalog, text otherwise.

A parameter column is an integer (int64) or a number (double) when every value the selecting events
have stored under that key is one, as the catalog records (exporter/ucd/values.py); anything else
(text, booleans, nested values as JSON text) is a string. The catalog only ever widens a kind, and
it is extended before an event's segment commits, so the kinds read when a window's export begins
hold every value in the window. They are fixed then, with the selection on the run record, so a
retry or a replay types the window the same way whatever the catalog says later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from ...ucd.segments import PARAM_PREFIX
from ...ucd.values import INTEGER, NUMBER, STRING, Json, join_kinds
from ..plan import ColumnPlan, Selection, column_plan

TIMESTAMP = "timestamp"  # the event's own time: UTC, milliseconds
ARROW_TYPES = {
    STRING: pa.string(),
    TIMESTAMP: pa.timestamp("ms", tz="UTC"),
    INTEGER: pa.int64(),
    NUMBER: pa.float64(),
}
NUMERIC = (INTEGER, NUMBER)


@dataclass(frozen=True)
class ColumnTypes:
    """Each column of the plan, in header order, with its type (a key of ARROW_TYPES)."""

    columns: tuple[tuple[str, str], ...]

    @property
    def types(self) -> list[str]:
        return [kind for _, kind in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(name, ARROW_TYPES[kind]) for name, kind in self.columns])

    def to_json(self) -> list[Json]:
        return [{"name": name, "type": kind} for name, kind in self.columns]


def column_types(plan: ColumnPlan, param_types: Mapping[str, str] | None) -> ColumnTypes:
    """The plan's columns typed: `timestamp` a timestamp, the numeric parameters numbers, the rest strings."""
    kinds = param_types or {}
    columns = []
    for column in plan.columns:
        if column.header == "timestamp":
            kind = TIMESTAMP
        elif column.source.startswith(PARAM_PREFIX):
            kind = kinds.get(column.header, STRING)
        else:
            kind = STRING
        columns.append((column.header, kind))
    return ColumnTypes(tuple(columns))


def numeric_params(plan: ColumnPlan, catalog: Mapping[str, object]) -> dict[str, str]:
    """The plan's parameter columns that are numeric by the catalog: the kind holding every selecting event's values."""
    declared = catalog.get("param_types")  # event: parameter: kind, as the catalog's answer has it
    kinds: Mapping[str, Mapping[str, str]] = declared if isinstance(declared, dict) else {}
    numeric = {}
    for column in plan.columns:
        if not column.source.startswith(PARAM_PREFIX):
            continue
        key = column.source[len(PARAM_PREFIX) :]
        kind: str | None = None
        for event in sorted(column.only_for or plan.event_names):
            kind = join_kinds(kind, kinds.get(event, {}).get(key))
        if kind in NUMERIC:
            numeric[column.header] = kind
    return numeric


def with_param_types(selection: Selection, typed: bool, catalog: Callable[[], Mapping[str, object]]) -> Selection:
    """The selection with its parameters' types fixed from the catalog, if its file needs them and has none yet.

    `typed`: the format's bytes depend on the types, or a manifest lists them.
    """
    if selection.param_types is not None or not (typed or selection.manifest):
        return selection
    plan = column_plan(selection.events, selection.attributes)
    return dataclasses.replace(selection, param_types=tuple(sorted(numeric_params(plan, catalog()).items())))
