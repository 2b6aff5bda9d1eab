"""The CSV column plan and writer (pure): column order and collisions, RFC 4180 bytes, and fixed-size
blocks that make a re-export byte-identical (docs/architecture.md: the export file).
"""

import csv
import io

import pyarrow as pa
import pytest

from exporter.errors import InputError
from exporter.export.plan import EventSelection, column_plan
from tests.export_helpers import FileBytes, write_csv

FIXED = ["event_id", "user_id", "event_name", "timestamp"]


def test_column_order_fixed_then_params_in_selection_order_then_attributes():
    plan = column_plan(
        [EventSelection("purchase", ("price", "currency")), EventSelection("email_open", ("campaign", "price"))],
        ["email", "country"],
    )
    assert plan.header == FIXED + ["price", "currency", "campaign", "attr_email", "attr_country"]
    assert plan.source_columns == ["p:price", "p:currency", "p:campaign", "a:email", "a:country"]
    assert plan.event_names == ("purchase", "email_open")
    # a parameter selected for every event is not restricted; one selected for some events is
    only_for = {c.header: c.only_for for c in plan.columns}
    assert only_for["price"] is None
    assert only_for["currency"] == frozenset({"purchase"})
    assert only_for["campaign"] == frozenset({"email_open"})


@pytest.mark.parametrize(
    "events, attributes, field",
    [
        ([EventSelection("purchase", ("event_id",))], [], "events[0].params[0]"),
        ([EventSelection("purchase", ("timestamp",))], [], "events[0].params[0]"),
        ([EventSelection("purchase", ("price", "price"))], [], "events[0].params[1]"),
        ([EventSelection("purchase", ("attr_email",))], ["email"], "attributes[0]"),
        ([EventSelection("a", ()), EventSelection("b", ("x", "attr_y"))], ["z", "y"], "attributes[1]"),
    ],
)
def test_colliding_columns_are_refused_naming_the_field(events, attributes, field):
    with pytest.raises(InputError) as raised:
        column_plan(events, attributes)
    assert raised.value.field == field
    assert "twice" in raised.value.reason or "collide" in raised.value.reason


def test_the_same_parameter_for_two_events_is_one_column():
    plan = column_plan([EventSelection("a", ("x",)), EventSelection("b", ("x",))], [])
    assert plan.header == FIXED + ["x"]


def _segment_batch(rows, columns):
    names = FIXED + columns
    return pa.RecordBatch.from_arrays(
        [pa.array([r.get(n) for r in rows], pa.string()) for n in names],
        schema=pa.schema([(n, pa.string()) for n in names]),
    )


def test_project_empties_a_parameter_for_events_that_did_not_select_it():
    plan = column_plan([EventSelection("purchase", ("price",)), EventSelection("email_open", ())], ["email"])
    rows = [
        {
            "event_id": "e1",
            "user_id": "u1",
            "event_name": "purchase",
            "timestamp": "t1",
            "p:price": "9.5",
            "a:email": "a@x",
        },
        {
            "event_id": "e2",
            "user_id": "u1",
            "event_name": "email_open",
            "timestamp": "t2",
            "p:price": "7",
            "a:email": "a@x",
        },
    ]
    projected = plan.project(_segment_batch(rows, plan.source_columns))
    assert projected.schema.names == plan.header
    data = projected.to_pydict()
    assert data["price"] == ["9.5", None], "email_open has a price parameter, but price was selected for purchase only"
    assert data["attr_email"] == ["a@x", "a@x"]
    assert data["event_id"] == ["e1", "e2"]


def test_a_batch_of_one_event_keeps_its_selected_parameters_without_a_copy_and_blanks_the_others():
    plan = column_plan([EventSelection("purchase", ("price",)), EventSelection("page_view", ("url",))], [])
    row = {"user_id": "u1", "timestamp": "t", "p:price": "9.5", "p:url": "https://x/?a=1,b"}
    rows = [{**row, "event_id": f"e{i}", "event_name": "purchase"} for i in range(3)]
    batch = _segment_batch(rows, plan.source_columns)
    projected = plan.project(batch)
    assert projected.column("price").buffers()[2].address == batch.column("p:price").buffers()[2].address, (
        "every row selects price: its values are handed on, not copied"
    )
    assert projected.to_pydict()["url"] == [None] * 3, "url was selected for page_view only"
    mixed = plan.project(
        _segment_batch([*rows, {**row, "event_id": "v", "event_name": "page_view"}], plan.source_columns)
    )
    assert mixed.to_pydict()["price"] == ["9.5"] * 3 + [None]
    assert mixed.to_pydict()["url"] == [None] * 3 + ["https://x/?a=1,b"]


# ------------------------------------------------------------------ CSV writer


def _csv(rows, plan):
    sink = FileBytes()
    batches = [_segment_batch(rows, plan.source_columns)] if rows else []
    count = write_csv(batches, plan, sink)
    return bytes(sink.data), count, sink


PLAN = column_plan([EventSelection("purchase", ("note",))], ["name"])


def test_no_rows_gives_a_header_only_file():
    data, count, sink = _csv([], PLAN)
    assert count == 0
    assert data == b'"event_id","user_id","event_name","timestamp","note","attr_name"\r\n'
    assert sink.bytes_written == len(data)


def test_rfc4180_quoting_crlf_null_versus_empty_and_unicode():
    rows = [
        {
            "event_id": "e1",
            "user_id": "u1",
            "event_name": "purchase",
            "timestamp": "2026-11-28T10:00:00.000Z",
            "p:note": 'a, "quoted"\nline',
            "a:name": "Zoë 日本 🎉",
        },
        {
            "event_id": "e2",
            "user_id": "u2",
            "event_name": "purchase",
            "timestamp": "2026-11-28T10:00:01.000Z",
            "p:note": "",
            "a:name": None,
        },
    ]
    data, count, _ = _csv(rows, PLAN)
    assert count == 2
    text = data.decode("utf-8")
    lines = text.split("\r\n")
    assert lines[-1] == "" and text.endswith("\r\n"), "every record ends with CRLF"
    assert text.count("\r\n") == 3, "the newline inside a value is not a record break"
    assert '"a, ""quoted""\nline"' in text, "comma, quote and newline are quoted; quotes doubled"
    assert lines[2] == '"e2","u2","purchase","2026-11-28T10:00:01.000Z","",', (
        'empty string is "", null is a bare empty cell'
    )
    assert "Zoë 日本 🎉".encode() in data
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[1][4] == 'a, "quoted"\nline'
    assert parsed[1][5] == "Zoë 日本 🎉"
    assert parsed[2][4:] == ["", ""]


def test_the_same_rows_give_the_same_bytes_every_time():
    rows = [
        {
            "event_id": f"e{i:04d}",
            "user_id": f"u{i}",
            "event_name": "purchase",
            "timestamp": "t",
            "p:note": "x" * (i % 17),
            "a:name": None if i % 3 else "n",
        }
        for i in range(500)
    ]
    first = _csv(rows, PLAN)[0]
    second = _csv(rows, PLAN)[0]
    assert first == second
    assert first.count(b"\r\n") == 501
