"""The CSV column plan (pure, no I/O): which columns, in which order (docs/architecture.md, "The export file")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..ucd.segments import FIXED_COLUMNS, attribute_column, param_column

if TYPE_CHECKING:  # a JSON value's type only: the ucd package is not loaded for it
    from ..ucd.values import Json


@dataclass(frozen=True)
class EventSelection:
    name: str
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selection:
    """What a file holds: the selected events, each with its parameters, and the user attributes; and how
    it is written: its format (exporter.export.formats), whether a manifest follows it, and the numeric
    parameters' types, fixed from the catalog when a typed file's window begins (None: not fixed yet).

    The worker stores it on the run record before the first byte, so a begun window, its retries and a
    replay keep it (docs/architecture.md, "The export file").
    """

    events: tuple[EventSelection, ...]
    attributes: tuple[str, ...] = ()
    format: str = "csv"
    manifest: bool = False
    param_types: tuple[tuple[str, str], ...] | None = None  # (column, "integer" or "number"); others are strings

    def to_json(self) -> dict[str, Json]:
        data: dict[str, Json] = {
            "events": events_json(self.events),
            "attributes": list(self.attributes),
            "format": self.format,
            "manifest": self.manifest,
        }
        if self.param_types is not None:
            data["param_types"] = dict(self.param_types)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Selection:
        """A stored selection; one stored before formats existed is a CSV without a manifest."""
        types = data.get("param_types")
        return cls(
            events_from_json(data["events"]),
            tuple(data["attributes"]),
            data.get("format", "csv"),
            bool(data.get("manifest", False)),
            None if types is None else tuple(sorted(types.items())),
        )


def events_json(events: Sequence[EventSelection]) -> list[Json]:
    """The selected events as the API and storage write them: [{"name", "params"}]."""
    return [{"name": e.name, "params": list(e.params)} for e in events]


def events_from_json(items: list[dict[str, Any]]) -> tuple[EventSelection, ...]:
    return tuple(EventSelection(e["name"], tuple(e["params"])) for e in items)


@dataclass(frozen=True)
class CsvColumn:
    header: str  # the name in the CSV header
    source: str  # the segment column it comes from
    only_for: frozenset[str] | None = None  # a parameter selected for some events only: empty for the others


_NULL = pa.nulls(1, pa.string())[0]  # the null of every unselected cell, made once


@dataclass(frozen=True)
class ColumnPlan:
    columns: tuple[CsvColumn, ...]
    event_names: tuple[str, ...]
    schema: pa.Schema = field(init=False, compare=False)
    # Each column's event names as an Arrow array (None: every event), built once, not per batch.
    _only_for: tuple[pa.Array | None, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", pa.schema([(c.header, pa.string()) for c in self.columns]))
        only_for = tuple(
            None if c.only_for is None else pa.array(sorted(c.only_for), pa.string()) for c in self.columns
        )
        object.__setattr__(self, "_only_for", only_for)

    @property
    def header(self) -> list[str]:
        return [c.header for c in self.columns]

    @property
    def source_columns(self) -> list[str]:
        """The segment columns to read beyond the fixed four."""
        return [c.source for c in self.columns if c.source not in FIXED_COLUMNS]

    def project(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A UCD batch (segment column names) → the CSV's columns, in header order.

        A segment's batches hold one event name, or a few (docs/architecture.md, segments), so a
        parameter's column is mostly kept whole (handed on without a copy) or blanked whole; only a
        batch that mixes its events and others is masked row by row.
        """
        arrays = []
        event_name = batch.column("event_name")
        kept: dict[int, pa.Array | bool] = {}  # per set of event names: a row mask, or True / False for every row
        for column, only_for in zip(self.columns, self._only_for):
            values = batch.column(column.source)
            if only_for is not None:
                if id(only_for) not in kept:
                    kept[id(only_for)] = _rows_of(event_name, only_for)
                rows = kept[id(only_for)]
                if rows is False:
                    values = pa.nulls(len(values), pa.string())
                elif rows is not True:
                    values = pc.if_else(rows, values, _NULL)
            arrays.append(values)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _rows_of(event_name: pa.Array, names: pa.Array) -> pa.Array | bool:
    """Which rows are of one of `names`: True (all), False (none), or a mask."""
    mask = pc.is_in(event_name, value_set=names)
    selected = pc.sum(mask).as_py() or 0
    return True if selected == len(mask) else False if selected == 0 else mask


def column_plan(events: Sequence[EventSelection], attributes: Sequence[str]) -> ColumnPlan:
    """Fixed columns, then each selected parameter once, then `attr_<key>` per attribute.

    Raises InputError naming the field when two columns would share a header.
    """
    columns = [CsvColumn(name, name) for name in FIXED_COLUMNS]
    owner: dict[str, str] = {name: "a fixed column" for name in FIXED_COLUMNS}
    param_events: dict[str, set[str]] = {}
    order: list[str] = []
    for i, event in enumerate(events):
        seen_here: set[str] = set()
        for j, key in enumerate(event.params):
            where = f"events[{i}].params[{j}]"
            if key in seen_here:
                raise InputError(f"parameter {key!r} is listed twice for event {event.name!r}", field=where)
            seen_here.add(key)
            if key in owner and key not in param_events:
                raise InputError(f"column {key!r} would collide with {owner[key]}", field=where)
            if key not in param_events:
                param_events[key] = set()
                order.append(key)
                owner[key] = f"parameter {key!r}"
            param_events[key].add(event.name)
    all_events = {e.name for e in events}
    for key in order:
        selected_by = param_events[key]
        columns.append(CsvColumn(key, param_column(key), None if selected_by == all_events else frozenset(selected_by)))
    for i, key in enumerate(attributes):
        header = f"attr_{key}"
        if header in owner:
            raise InputError(f"column {header!r} would collide with {owner[header]}", field=f"attributes[{i}]")
        owner[header] = f"attribute {key!r}"
        columns.append(CsvColumn(header, attribute_column(key)))
    return ColumnPlan(tuple(columns), tuple(e.name for e in events))
