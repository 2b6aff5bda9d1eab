"""A bug that surfaces from a destination (a `TypeError` in our own code, raised as it is or mapped to an
InternalError by the destination) is an internal error: recorded as such on the window's run, its
traceback logged, redelivered until the poison queue names it; never recorded as a retry of a fault.

The bug is in a destination of the kit's type (`BuggyDestination`: the real one whose staging of a
block raises), for a whole window and for one part of a split window.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from exporter.clock import to_unix
from exporter.destinations import open_destination as real_open_destination
from exporter.errors import InternalError
from exporter.integrations.model import Status
from exporter.jobs import schedule
from exporter.jobs.split import SplitRepo
from exporter.local.host import drain
from exporter.runs import RunStatus
from tests.destination_helpers import behind, create_with_small_segments
from tests.export_helpers import ACCOUNT, ACT, H, deliver_one, due_at

BUG = "internal error (TypeError)"


class BuggyDestination:
    """The real destination (every method, splitting too), but its method `buggy` raises `bug()`."""

    def __init__(self, inner, bug, buggy):
        self.inner, self.bug, self.buggy = inner, bug, buggy

    def __getattr__(self, name):
        if name == self.buggy:
            return self._raise
        return getattr(self.inner, name)

    def _raise(self, *args):
        raise self.bug()


def a_type_error():
    return TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")


def an_internal_error_from_a_type_error():
    """What a destination's error mapping raises for an exception it does not know: ours, from the bug."""
    try:
        raise a_type_error()
    except TypeError as cause:
        error = InternalError(BUG)
        error.__cause__ = cause  # as `raise InternalError(...) from cause` sets it
        return error


def buggy(ctx, monkeypatch, bug, method: str = "stage_block") -> None:
    opened = lambda *a: BuggyDestination(real_open_destination(*a), bug, method)  # noqa: E731
    monkeypatch.setattr(ctx, "open_destination", opened)


def assert_a_bug_recorded(ctx, caplog, iid: str, method: str = "stage_block") -> None:
    """The failed delivery raised an InternalError (asserted by the caller); its run and its log say bug."""
    record = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert (record.status, record.error, record.attempts) == (RunStatus.FAILED, BUG, 1)
    jobs = [r for r in caplog.records if r.name.startswith("exporter.jobs")]
    bugs = [r for r in jobs if r.getMessage().startswith("bug: unexpected TypeError")]
    assert len(bugs) == 1, [r.getMessage() for r in jobs]
    trace = bugs[0].traceback
    assert "TypeError: unsupported operand" in trace and "in _raise" in trace, trace
    assert f"{method}(" in trace, "the traceback shows where our code called the destination"
    assert not any("will retry" in r.getMessage() for r in jobs), "a bug is not logged as a retry"
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.ACTIVE and integration.last_success_end is None


def assert_poisoned_as_a_bug(ctx, iid: str) -> None:
    """Every redelivery meets the bug again: the poison queue ends it, and the run names the bug."""
    worked = drain(ctx)
    assert (worked["poisoned"], worked["windows_exported"]) == (1, 0)
    record = ctx.runs.get(ACCOUNT, iid, to_unix(ACT))
    assert (record.status, record.error) == (RunStatus.POISONED, f"gave up after 5 deliveries: {BUG}")


def a_buggy_delivery(ctx, clock, kit, monkeypatch, caplog, bug) -> str:
    """A window due, the destination's bug met by its first delivery: an InternalError, its run recorded."""
    iid = behind(ctx, clock, kit, 1)
    schedule(ctx)
    buggy(ctx, monkeypatch, bug)
    caplog.set_level(logging.INFO, logger="exporter")
    with pytest.raises(InternalError):
        deliver_one(ctx)
    assert_a_bug_recorded(ctx, caplog, iid)
    return iid


def test_a_type_error_from_a_destination_is_an_internal_error_not_a_retry(ctx, clock, kit, monkeypatch, caplog):
    iid = a_buggy_delivery(ctx, clock, kit, monkeypatch, caplog, a_type_error)
    assert_poisoned_as_a_bug(ctx, iid)


def test_a_destinations_internal_error_keeps_the_type_error_it_was_raised_from(
    ctx, clock, azure_kit, monkeypatch, caplog
):
    a_buggy_delivery(ctx, clock, azure_kit, monkeypatch, caplog, an_internal_error_from_a_type_error)
    [bug] = [r for r in caplog.records if r.getMessage().startswith("bug:")]
    assert "direct cause" in bug.traceback and "InternalError: internal error (TypeError)" in bug.traceback


def a_split_window(ctx, clock, azure_kit, monkeypatch, bug, method: str) -> str:
    """A window of three parts, planned by its first delivery, the destination's `method` buggy from then on."""
    iid = create_with_small_segments(ctx, clock, azure_kit, 3, 20)
    total = sum(ref.size for ref in ctx.ucd.segments(ACCOUNT, ACT, ACT + H))
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, split_bytes=total // 3 + 1))
    clock.set(due_at(1))
    assert schedule(ctx).queued == 1
    buggy(ctx, monkeypatch, bug, method)
    assert deliver_one(ctx).reason == "the window is exported in 3 parts"
    assert SplitRepo(ctx.runs.table, ctx.integrations.secrets).get(ACCOUNT, iid, to_unix(ACT)) is not None
    return iid


def test_a_type_error_exporting_a_part_of_a_split_window_is_an_internal_error(
    ctx, clock, azure_kit, monkeypatch, caplog
):
    iid = a_split_window(ctx, clock, azure_kit, monkeypatch, a_type_error, "stage_block")
    caplog.set_level(logging.INFO, logger="exporter")

    with pytest.raises(InternalError):
        deliver_one(ctx)  # part 0
    assert_a_bug_recorded(ctx, caplog, iid)


def test_a_type_error_committing_a_split_window_is_an_internal_error(ctx, clock, azure_kit, monkeypatch, caplog):
    iid = a_split_window(ctx, clock, azure_kit, monkeypatch, a_type_error, "commit_parts")
    assert [deliver_one(ctx).reason for _ in range(2)] == ["part 0 exported", "part 1 exported"]
    caplog.set_level(logging.INFO, logger="exporter")

    with pytest.raises(InternalError):
        deliver_one(ctx)  # part 2, then the commit
    assert_a_bug_recorded(ctx, caplog, iid, "commit_parts")
    assert ctx.repo.get(ACCOUNT, iid).last_success_end is None
