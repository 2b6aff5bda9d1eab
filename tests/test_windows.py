"""Pure parts of the export engine: window math (I2, I3), file names and columns (DESIGN 4), CSV bytes (I4).

No storage: these run in milliseconds and pin the behaviour the Azurite tests build on.
"""
import csv
import io
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from exporter.errors import InputError
from exporter.export.csv_writer import BlockSink, write_csv
from exporter.export.plan import EventSelection, column_plan, file_name, join_prefix
from exporter.windows import FREQUENCIES_HOURS, Window, backlog, due_windows, export_lag_seconds, is_due

ACTIVATED = datetime(2026, 11, 28, 10, 17, 23, tzinfo=timezone.utc)  # deliberately not a clock hour
SETTLE = 120
H = timedelta(hours=1)
S = timedelta(seconds=1)


def windows(activated=ACTIVATED, last=None, freq=1, now=None, settle=SETTLE, limit=None):
    return list(due_windows(activated, last, freq, now, settle, limit))


# ------------------------------------------------------------------ windows (I2)


def test_first_window_starts_at_activation_not_at_a_clock_hour():
    first = windows(now=ACTIVATED + H + timedelta(seconds=SETTLE))
    assert first == [Window(ACTIVATED, ACTIVATED + H)]
    assert first[0].start.minute == 17 and first[0].start.second == 23
    assert first[0].start_unix == int(ACTIVATED.timestamp())
    assert first[0].end_unix - first[0].start_unix == 3600


@pytest.mark.parametrize("freq", FREQUENCIES_HOURS)
def test_windows_are_contiguous_and_exactly_frequency_long(freq):
    length = timedelta(hours=freq)
    now = ACTIVATED + 10 * length + timedelta(seconds=SETTLE)
    got = windows(freq=freq, now=now)
    assert len(got) == 10
    assert got[0].start == ACTIVATED
    for previous, following in zip(got, got[1:]):
        assert following.start == previous.end, "window k+1 starts where window k ended"
    for window in got:
        assert window.end - window.start == length
        assert window.end_unix - window.start_unix == freq * 3600


def test_frequencies_are_the_documented_six():
    assert FREQUENCIES_HOURS == (1, 2, 4, 6, 12, 24)


@pytest.mark.parametrize("freq", FREQUENCIES_HOURS)
def test_a_window_is_due_exactly_at_end_plus_settle(freq):
    end = ACTIVATED + timedelta(hours=freq)
    due_at = end + timedelta(seconds=SETTLE)
    assert windows(freq=freq, now=due_at - S) == []
    assert not is_due(ACTIVATED, None, freq, due_at - S, SETTLE)
    assert windows(freq=freq, now=due_at) == [Window(ACTIVATED, end)]
    assert is_due(ACTIVATED, None, freq, due_at, SETTLE)
    # at the end itself (inside the settle time) nothing is due either
    assert windows(freq=freq, now=end) == []


def test_settle_is_a_parameter_not_a_constant():
    end = ACTIVATED + H
    assert windows(now=end + timedelta(seconds=299), settle=300) == []
    assert windows(now=end + timedelta(seconds=300), settle=300) == [Window(ACTIVATED, end)]


def test_nothing_is_due_before_activation_or_right_after_it():
    assert windows(now=ACTIVATED - timedelta(days=3)) == []
    assert windows(now=ACTIVATED) == []
    assert backlog(ACTIVATED, None, 1, ACTIVATED - timedelta(days=3), SETTLE) == 0


# ------------------------------------------------------------------ catch-up (I3)


def test_catch_up_after_a_pause_yields_one_window_per_missed_period_oldest_first():
    last = ACTIVATED + 2 * H  # delivered two windows, then paused for five hours and resumed
    now = last + 5 * H + timedelta(seconds=SETTLE) + timedelta(minutes=7)
    got = windows(last=last, now=now)
    assert [w.start for w in got] == [last + k * H for k in range(5)]
    assert got == sorted(got), "oldest first"
    assert got[-1].end == last + 5 * H


def test_catch_up_after_a_credential_error_respects_the_limit_and_resumes_where_it_stopped():
    last = ACTIVATED + 3 * H  # credential error for two days
    now = last + 48 * H + timedelta(seconds=SETTLE)
    assert len(windows(last=last, now=now)) == 48
    first_run = windows(last=last, now=now, limit=12)
    assert len(first_run) == 12
    assert first_run[0] == Window(last, last + H)
    # the next run starts from the new last_success_end: no gap, no repeat
    second_run = windows(last=first_run[-1].end, now=now, limit=12)
    assert second_run[0].start == first_run[-1].end
    assert len(second_run) == 12
    assert windows(last=last, now=now, limit=0) == []


def test_last_success_end_anchors_windows_not_activation():
    # A last_success_end off the activation grid (e.g. after a frequency change) is respected as is.
    last = ACTIVATED + timedelta(hours=3)
    got = windows(last=last, freq=2, now=last + 4 * H + timedelta(seconds=SETTLE))
    assert got == [Window(last, last + 2 * H), Window(last + 2 * H, last + 4 * H)]


def test_frequency_change_applies_from_last_success_end():
    last = ACTIVATED + 3 * H  # three hourly windows delivered, then switched to 6 hours
    now = last + 13 * H + timedelta(seconds=SETTLE)
    got = windows(last=last, freq=6, now=now)
    assert got == [Window(last, last + 6 * H), Window(last + 6 * H, last + 12 * H)]
    # not aligned with a 6-hour grid anchored at activation (which would start at +6h)
    assert got[0].start != ACTIVATED + 6 * H
    # and switching back to hourly continues from the 6-hour window's end
    got_back = windows(last=got[-1].end, freq=1, now=now)
    assert got_back == [Window(got[-1].end, got[-1].end + H)]


@pytest.mark.parametrize("freq", FREQUENCIES_HOURS)
@pytest.mark.parametrize("last_hours", [None, 0, 5, 30])
def test_backlog_counts_exactly_the_due_windows(freq, last_hours):
    last = None if last_hours is None else ACTIVATED + timedelta(hours=last_hours)
    anchor = last or ACTIVATED
    for minutes in (0, 1, 59, 60, 61, 62, 121, 122, 24 * 60, 24 * 60 + 2, 7 * 24 * 60 + 3):
        now = anchor + timedelta(minutes=minutes)
        assert backlog(ACTIVATED, last, freq, now, SETTLE) == len(windows(last=last, freq=freq, now=now)), (freq, last, minutes)


def test_backlog_boundary_one_second_before_and_at_due_time():
    due_at = ACTIVATED + 3 * H + timedelta(seconds=SETTLE)
    assert backlog(ACTIVATED, None, 1, due_at - S, SETTLE) == 2
    assert backlog(ACTIVATED, None, 1, due_at, SETTLE) == 3


def test_export_lag_is_now_minus_the_delivered_end():
    assert export_lag_seconds(ACTIVATED, None, ACTIVATED + H) == 3600
    assert export_lag_seconds(ACTIVATED, ACTIVATED + 2 * H, ACTIVATED + 5 * H) == 3 * 3600
    assert export_lag_seconds(ACTIVATED, None, ACTIVATED - H) == 0


# ------------------------------------------------------------------ file names (DESIGN 4, I4)


def test_file_name_is_the_documented_pure_function_of_integration_and_window():
    window = Window(ACTIVATED, ACTIVATED + H)
    start = int(ACTIVATED.timestamp())
    expected = f"acme_events_abc123_{start}_{start + 3600}.csv"
    assert file_name("", "acme", "abc123", window) == expected
    assert file_name("", "acme", "abc123", Window(ACTIVATED, ACTIVATED + H)) == expected, "same input, same name"


@pytest.mark.parametrize("prefix, joined", [
    ("", "NAME"),
    ("a", "a/NAME"),
    ("a/", "a/NAME"),
    ("/a/b/", "a/b/NAME"),
    ("a//", "a/NAME"),
])
def test_prefix_is_joined_with_exactly_one_slash(prefix, joined):
    window = Window(ACTIVATED, ACTIVATED + H)
    base = file_name("", "acme", "i1", window)
    name = file_name(prefix, "acme", "i1", window)
    assert name == joined.replace("NAME", base)
    assert "//" not in name and not name.startswith("/")
    if prefix.strip("/"):
        assert name.count("/") == prefix.strip("/").count("/") + 1
    else:
        assert "/" not in name
    assert join_prefix(prefix, base) == name


# ------------------------------------------------------------------ column plan


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


@pytest.mark.parametrize("events, attributes, field", [
    ([EventSelection("purchase", ("event_id",))], [], "events[0].params[0]"),
    ([EventSelection("purchase", ("timestamp",))], [], "events[0].params[0]"),
    ([EventSelection("purchase", ("price", "price"))], [], "events[0].params[1]"),
    ([EventSelection("purchase", ("attr_email",))], ["email"], "attributes[0]"),
    ([EventSelection("a", ()), EventSelection("b", ("x", "attr_y"))], ["z", "y"], "attributes[1]"),
])
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
        {"event_id": "e1", "user_id": "u1", "event_name": "purchase", "timestamp": "t1", "p:price": "9.5", "a:email": "a@x"},
        {"event_id": "e2", "user_id": "u1", "event_name": "email_open", "timestamp": "t2", "p:price": "7", "a:email": "a@x"},
    ]
    projected = plan.project(_segment_batch(rows, plan.source_columns))
    assert projected.schema.names == plan.header
    data = projected.to_pydict()
    assert data["price"] == ["9.5", None], "email_open has a price parameter, but price was selected for purchase only"
    assert data["attr_email"] == ["a@x", "a@x"]
    assert data["event_id"] == ["e1", "e2"]


# ------------------------------------------------------------------ CSV writer


def _csv(rows, plan, block_bytes=1 << 20):
    blocks = []
    sink = BlockSink(blocks.append, block_bytes)
    batches = [_segment_batch(rows, plan.source_columns)] if rows else []
    count = write_csv(batches, plan, sink)
    return b"".join(blocks), count, blocks, sink


PLAN = column_plan([EventSelection("purchase", ("note",))], ["name"])


def test_no_rows_gives_a_header_only_file():
    data, count, blocks, sink = _csv([], PLAN)
    assert count == 0
    assert data == b'"event_id","user_id","event_name","timestamp","note","attr_name"\r\n'
    assert sink.bytes_written == len(data)


def test_rfc4180_quoting_crlf_null_versus_empty_and_unicode():
    rows = [
        {"event_id": "e1", "user_id": "u1", "event_name": "purchase", "timestamp": "2026-11-28T10:00:00.000Z",
         "p:note": 'a, "quoted"\nline', "a:name": "Zoë 日本 🎉"},
        {"event_id": "e2", "user_id": "u2", "event_name": "purchase", "timestamp": "2026-11-28T10:00:01.000Z",
         "p:note": "", "a:name": None},
    ]
    data, count, _, _ = _csv(rows, PLAN)
    assert count == 2
    text = data.decode("utf-8")
    lines = text.split("\r\n")
    assert lines[-1] == "" and text.endswith("\r\n"), "every record ends with CRLF"
    assert text.count("\r\n") == 3, "the newline inside a value is not a record break"
    assert '"a, ""quoted""\nline"' in text, "comma, quote and newline are quoted; quotes doubled"
    assert lines[2] == '"e2","u2","purchase","2026-11-28T10:00:01.000Z","",', "empty string is \"\", null is a bare empty cell"
    assert "Zoë 日本 🎉".encode("utf-8") in data
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[1][4] == 'a, "quoted"\nline'
    assert parsed[1][5] == "Zoë 日本 🎉"
    assert parsed[2][4:] == ["", ""]


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 1000])
def test_block_sink_cuts_fixed_size_blocks_independent_of_write_sizes(block_bytes):
    payload = bytes(range(256)) * 3

    def cut(chunks):
        blocks = []
        sink = BlockSink(blocks.append, block_bytes)
        offset = 0
        for size in chunks:
            sink.write(payload[offset:offset + size])
            offset += size
        sink.write(payload[offset:])
        sink.finish()
        return blocks, sink

    one, sink = cut([])
    many, _ = cut([1, 2, 3, 50, 100, 5, 300])
    assert one == many, "block boundaries depend on the bytes alone"
    assert b"".join(one) == payload
    assert all(len(b) == block_bytes for b in one[:-1])
    assert 0 < len(one[-1]) <= block_bytes
    assert sink.bytes_written == len(payload)


def test_block_sink_emits_nothing_for_nothing_and_no_empty_last_block():
    blocks = []
    sink = BlockSink(blocks.append, 4)
    sink.finish()
    assert blocks == []
    sink.write(b"abcdefgh")
    sink.finish()
    assert blocks == [b"abcd", b"efgh"]


def test_the_same_rows_give_the_same_blocks_every_time():
    rows = [{"event_id": f"e{i:04d}", "user_id": f"u{i}", "event_name": "purchase", "timestamp": "t",
             "p:note": "x" * (i % 17), "a:name": None if i % 3 else "n"} for i in range(500)]
    first = _csv(rows, PLAN, block_bytes=333)[2]
    second = _csv(rows, PLAN, block_bytes=333)[2]
    assert first == second
    assert len(first) > 10
