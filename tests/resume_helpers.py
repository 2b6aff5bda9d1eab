"""Resumable windows' test scaffolding: a destination that counts (or kills at) staged blocks, and a
time budget that runs out after every block (tests/test_export_resume.py, tests/test_export_parquet_resume.py)."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter

from exporter.destinations import open_destination as real_open_destination
from exporter.local.host import drain
from tests.export_helpers import deliver_one


class Killed(BaseException):
    """The worker process dies: nothing of ours runs after it (no `except Exception` catches it)."""


class Staging:
    """The real destination, counting every block staged; `kill_after` (k) kills the worker once block k is staged,
    `kill_at_commit` once every block is staged and recorded, before the file's commit."""

    def __init__(self, inner, seen: Counter, kill_after: int | None = None, kill_at_commit: bool = False):
        self.inner, self.seen, self.kill_after, self.kill_at_commit = inner, seen, kill_after, kill_at_commit
        self.prefix = inner.prefix
        self._lock = threading.Lock()

    def describe(self):
        return self.inner.describe()

    def verify(self, name):
        return self.inner.verify(name)

    def stage_block(self, path, index, data):
        if self.kill_after is not None and index > self.kill_after:
            raise Killed()  # a dead worker stages nothing more
        state = self.inner.stage_block(path, index, data)
        with self._lock:
            self.seen[index] += 1
        if index == self.kill_after:
            raise Killed()  # staged at the service, but the worker died before recording it
        return state

    def resume_upload(self, path, state, staged):
        self.inner.resume_upload(path, state, staged)

    def commit_blocks(self, path, count):
        if self.kill_at_commit:
            raise Killed()
        self.inner.commit_blocks(path, count)

    def abandon_blocks(self, path):
        self.inner.abandon_blocks(path)


def staging(ctx, monkeypatch, seen: Counter, kill_after: int | None = None, kill_at_commit: bool = False) -> None:
    """The worker's destinations, counting staged blocks (and killing the worker where asked)."""
    monkeypatch.setattr(
        ctx, "open_destination", lambda *a: Staging(real_open_destination(*a), seen, kill_after, kill_at_commit)
    )


def time_runs_out_after_every_block(ctx, clock, monkeypatch) -> None:
    """A budget of one second, and a second passes with every batch read: each invocation stages one block."""
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, max_seconds_per_run=1))
    real_read = ctx.ucd.read_from

    def slow_read(*args, **kwargs):
        for item in real_read(*args, **kwargs):
            clock.advance(seconds=1)
            yield item

    monkeypatch.setattr(ctx.ucd, "read_from", slow_read)


def a_block_an_invocation(ctx, clock, monkeypatch) -> tuple[Counter, list]:
    """Drain the queue, the time running out after every block: the blocks staged and each invocation's result."""
    seen: Counter = Counter()
    staging(ctx, monkeypatch, seen)
    time_runs_out_after_every_block(ctx, clock, monkeypatch)
    results: list = []
    drain(ctx, on_result=results.append)
    return seen, results


def one_delivery_with_time_enough(ctx, monkeypatch) -> Counter:
    """Deliver the job once with a budget that does not run out; it exports the window: the blocks it staged."""
    again: Counter = Counter()
    staging(ctx, monkeypatch, again)
    monkeypatch.setattr(ctx, "settings", dataclasses.replace(ctx.settings, max_seconds_per_run=3600))
    assert deliver_one(ctx).exported == 1
    return again
