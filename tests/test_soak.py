"""A short chaos soak (`python -m bench.soak`, two simulated days), so that CI keeps the soak working.

The soak starts its own servers (two Azurites, moto, a GCS emulator) and worker processes, so it runs
as a subprocess; its seven integrations export to Azure Blob, S3 and GCS. Any lost or
duplicated event, missing or extra file fails it; only the known liveness limit of a large crashed
retry (tests/test_ucd_take_over_cost.py) turns it into an xfail with the soak's own messages.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bench.soak_check import Verdict, _parse
from bench.soak_ledger import IntegrationRecord, IntegrationSpec
from bench.soak_sites import Delivered

# The two that run the soak (a subprocess of a few minutes) are slow; its checker's own tests stay quick.
# One xdist worker runs them all, so the module's one soak report is made once; first, as the longest unit.
pytestmark = [
    pytest.mark.runs_first,
    pytest.mark.slow_tests(
        "test_the_soak_runs_its_chaos_and_checks_every_window", "test_the_soak_finds_nothing_lost_or_duplicated"
    ),
    pytest.mark.xdist_group("soak"),
]

ROOT = Path(__file__).resolve().parent.parent
# Known and not a loss (anything else the soak reports fails this test):
# a large retry of a crashed request takes over its dead claims one call per event, so under heavy
# faults it may be refused until the platform gives up (tests/test_ucd_take_over_cost.py).
KNOWN = re.compile(r"^upsert of \d+ events to \S+ first sent \S+ was refused \d+ times")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.soak",
            "--days",
            "2",
            "--seed",
            "11",
            "--volume",
            "0.5",
            "--step-minutes",
            "60",
            "--rate",
            "0.02",
            "--tick-kills",
            "0.15",
            "--upsert-kills",
            "0.05",
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,  # two simulated days take ~1-2 min; a loaded CI machine gets room
    )
    assert out.exists(), f"no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    answer = json.loads(out.read_text())
    assert done.returncode == (0 if answer["ok"] else 1), done.stderr[-3000:]
    return answer


def test_the_soak_runs_its_chaos_and_checks_every_window(report):
    assert report["seed"] == 11 and report["days"] == 2
    assert report["events_stored"] > 200 and report["rows_exported"] > 0
    assert sum(report["faults_injected"]["total"].values()) > 10
    assert report["faults_injected"]["total"].get("bad_signature", 0) > 0, "a customer's key was revoked"
    assert report["kills"]["tick"] + report["kills"]["upsert"] > 0
    assert report["credential_errors_seen"] >= 1
    assert set(report["files_by_kind"]) == {"azure_blob", "s3", "gcs"}, "every destination type is exported to"
    assert set(report["stopped_by_revocation"]) == {"azure_blob", "s3", "gcs"}, "a revoked key of each type stops"
    for proxy in ("dest_azure", "dest_s3", "dest_gcs"):
        assert sum(report["faults_injected"][proxy].values()) > 0, f"no fault reached {proxy}"
    abandoned = [a for a in report["abandoned"] if a["request"].startswith("upsert")]
    assert report["upserts"]["acknowledged"] + len(abandoned) == report["upserts"]["requests"]
    assert len(report["integrations"]) == 8, "seven integrations, one deleted and recreated"
    assert {i["format"] for i in report["integrations"]} == {"csv", "csv.gz"}, "gzip files (members) are read too"
    assert report["windows"] > 50 and report["files"] > 50


def test_the_soak_finds_nothing_lost_or_duplicated(report):
    unknown = [f for f in report["failures"] if not KNOWN.match(f)]
    assert not unknown, "\n".join(unknown[:20])
    if not report["ok"]:
        pytest.xfail("known, not a loss (see KNOWN): " + "; ".join(report["failures"][:3]))
    assert report["lost"] == 0 and report["duplicated"] == 0
    assert report["windows"] == report["files"]


# ------------------------------------------------------------------ the harness's own kills (seed 8, 30 days)
# Seed 8 once reported "a worker died without being killed during upsert (request:destination)": a
# planned kill (the tick's timer) landed just after the tick had answered, the dead worker stayed the
# active one and took the next command, and the kill switch still named the proxy of an older kill.


class _Idle:
    """The soak's servers as Workers.call sees them: no proxied requests."""

    def requests(self) -> int:
        return 0

    def wait_idle(self, timeout: float = 60) -> bool:
        return True


class _AnsweredBeforeTheKill:
    """A worker whose answer the parent reads only once the planned kill has landed."""

    def __init__(self, *_args) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])

    def wait_ready(self) -> bool:
        return True

    def send(self, command: dict) -> bool:
        return True

    def next_line(self, timeout: float) -> dict:
        self.process.wait(timeout)  # killed by the timer; its answer was already on the pipe
        return {"status": 200}

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def test_a_worker_killed_just_after_it_answered_takes_no_further_command(tmp_path, monkeypatch):
    from bench import soak_worker

    monkeypatch.setattr(soak_worker, "WorkerProcess", _AnsweredBeforeTheKill)
    workers = soak_worker.Workers(
        soak_worker.WorkerConfig({}, 1, 8, 1), _Idle(), soak_worker.KillSwitch({}), tmp_path / "log"
    )
    try:
        outcome = workers.call({"op": "tick"}, soak_worker.KillPlan(after_seconds=0))
        assert outcome.answer == {"status": 200} and outcome.killed is None
        assert outcome.killed_after_answer, "the kill is known"
        assert workers.active is None, "the killed worker was buried, not kept for the next command"
    finally:
        workers.stop()


def test_the_kill_switch_names_a_kill_only_to_the_call_it_was_armed_for():
    from bench.soak_servers import EXPORT_COMMITS, KillSwitch

    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    switch = KillSwitch({})
    switch.arm(victim.pid, 1, "reset_after")
    at_gcs_commit = switch._when("dest_gcs", "reset_after", EXPORT_COMMITS[2])
    assert not at_gcs_commit("PUT", "/upload/storage/v1/b/x/o?upload_id=1", {"Content-Range": "bytes 0-9/*"})
    assert at_gcs_commit("PUT", "/upload/storage/v1/b/x/o?upload_id=1", {"content-range": "bytes 10-19/20"})
    assert victim.wait(30) == -9
    assert switch.disarm() == "dest_gcs"
    assert switch.disarm() is None, "an unarmed call that dies is not reported as killed at the destination"


# ------------------------------------------------------------------ the soak's reader of csv.gz files


def _gzip_record() -> IntegrationRecord:
    spec = IntegrationSpec("g", "acme", "site", "", (("purchase", ("price",)),), (), 1, 0, "csv.gz")
    return IntegrationRecord("abc", spec, datetime(2026, 11, 28, tzinfo=timezone.utc), [])


def test_the_soak_reads_a_csv_gz_file_of_several_members_and_refuses_one_that_is_not_gzip():
    record = _gzip_record()
    header = ",".join(record.header()).encode() + b"\r\n"
    data = gzip.compress(header + b"e1,u1,purchase,t,1\r\n", mtime=0) + gzip.compress(
        b"e2,u1,purchase,t,2\r\n", mtime=0
    )
    verdict = Verdict()
    rows = _parse(verdict, "site", Delivered("x.csv.gz", data, len(data)), record)
    assert rows == [["e1", "u1", "purchase", "t", "1"], ["e2", "u1", "purchase", "t", "2"]] and not verdict.failures

    plain = header + b"e1,u1,purchase,t,1\r\n"
    assert _parse(verdict, "site", Delivered("x.csv.gz", plain, len(plain)), record) is None
    assert verdict.bad_files == 1 and "does not decompress" in verdict.failures[0]
