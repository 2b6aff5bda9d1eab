"""Window math (pure): windows anchored at activation, due at end + settle, catch-up oldest first,
backlog and lag (docs/invariants.md: windows, catch-up).
"""

from datetime import datetime, timedelta, timezone

import pytest

from exporter.windows import FREQUENCIES_HOURS, Window, backlog, due_windows, export_lag_seconds, is_due

ACTIVATED = datetime(2026, 11, 28, 10, 17, 23, tzinfo=timezone.utc)  # deliberately not a clock hour
SETTLE = 120
H = timedelta(hours=1)
S = timedelta(seconds=1)


def windows(activated=ACTIVATED, last=None, freq=1, now=None, settle=SETTLE, limit=None):
    return list(due_windows(activated, last, freq, now, settle, limit))


# ------------------------------------------------------------------ windows


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


# ------------------------------------------------------------------ catch-up


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
        assert backlog(ACTIVATED, last, freq, now, SETTLE) == len(windows(last=last, freq=freq, now=now)), (
            freq,
            last,
            minutes,
        )


def test_backlog_boundary_one_second_before_and_at_due_time():
    due_at = ACTIVATED + 3 * H + timedelta(seconds=SETTLE)
    assert backlog(ACTIVATED, None, 1, due_at - S, SETTLE) == 2
    assert backlog(ACTIVATED, None, 1, due_at, SETTLE) == 3


def test_export_lag_is_now_minus_the_delivered_end():
    assert export_lag_seconds(ACTIVATED, None, ACTIVATED + H) == 3600
    assert export_lag_seconds(ACTIVATED, ACTIVATED + 2 * H, ACTIVATED + 5 * H) == 3 * 3600
    assert export_lag_seconds(ACTIVATED, None, ACTIVATED - H) == 0
