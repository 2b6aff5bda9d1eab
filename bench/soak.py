"""`python -m bench.soak`: a chaos soak of ingest and export on a simulated clock (see bench/README.md).

The real scheduler and workers run through the function app's own handlers, in worker processes that
are SIGKILLed at random points, against real storage (our Azurite; the customers' Azurite, moto for
S3 and a GCS emulator) behind fault proxies that break about 1 % of the calls. Customers upsert all
the time (duplicates, late events, anonymous and deleted users, bursts); the platform retries every
refused upsert until it is acknowledged. Integrations (on Azure Blob, S3 and GCS) are paused and
resumed, re-timed, deleted and recreated; a key of each destination type is revoked for hours and
then restored. At the end the faults stop, the clock runs on until every integration is up to
date, and the files of each destination, read alone, are checked against the soak's own ledger.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .soak_check import Verdict, check, entry_times, summary
from .soak_customers import SITES, Customers
from .soak_ledger import EventLedger
from .soak_servers import EXPORT_COMMITS, INGEST_COMMITS, KillSwitch, Servers, compress_sdk_backoff, start_servers
from .soak_sites import Site, open_site
from .soak_traffic import AccountTraffic, DeleteUser, Traffic, Upsert
from .soak_worker import KillPlan, Outcome, WorkerConfig, Workers

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "m3Jx0n2dR2bYbQ4dV8kq3G5Qm1u9r2o7Zr1bXq8lY2c="  # a throwaway Fernet key for the private Azurite
START = datetime(2026, 11, 28, 0, 0, 0, tzinfo=timezone.utc)
KILL_KINDS = ("reset_before", "reset_after")


# The tunable numbers: flag, type, default, what it is (the help adds the default).
OPTIONS: tuple[tuple[str, type, float, str], ...] = (
    ("--days", float, 30, "simulated days of traffic (at least 2)"),
    ("--seed", int, 7, "seeds the traffic, the chaos and the proxies' faults"),
    ("--step-minutes", int, 30, "simulated minutes between timer ticks"),
    ("--rate", float, 0.01, "share of storage calls given a random fault"),
    ("--tick-kills", float, 0.08, "share of ticks whose worker is SIGKILLed"),
    ("--upsert-kills", float, 0.03, "share of upserts killed mid-request"),
    ("--copies", float, 0.1, "share of job deliveries sent again as extra copies"),
    ("--max-attempts", int, 10, "sends of one request before the platform gives up on it and reports it"),
    ("--volume", float, 1.0, "scales the request rate of every account"),
    (
        "--commit-timeout",
        int,
        2,
        "UCD_COMMIT_TIMEOUT_SECONDS for the soak (the store waits it out in real time after a failed put)",
    ),
    ("--backoff-factor", float, 0.02, "scales the storage SDKs' real-time retry back-off (0.02: 15 s becomes 0.3 s)"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, kind, default, text in OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=f"{text} (default {default:g})")
    p.add_argument("--out", default=None, help="JSON report path (default bench-results/soak-<seed>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker and args.days < 2:
        p.error("--days must be at least 2 (the scenario's pauses and revocations need room)")
    return args


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


@dataclass(order=True)
class Action:
    at: datetime
    seq: int
    run: Callable[[datetime], None] = field(compare=False)
    what: str = field(compare=False, default="")


# ------------------------------------------------------------------ the simulation


class Soak:
    def __init__(self, args: argparse.Namespace, servers: Servers):
        from exporter.clock import ManualClock
        from exporter.context import Context
        from exporter.settings import Settings

        self.args = args
        self.servers = servers
        self.started = time.monotonic()
        self.clock = ManualClock(START)
        self.start = START
        self.end = START + timedelta(days=args.days)
        tag = f"s{args.seed}"
        common = dict(
            table_prefix=tag,
            queue_name=f"jobs-{tag}",
            ucd_container=f"ucd-{tag}",
            secret_key=SECRET_KEY,
            ucd_commit_timeout_seconds=args.commit_timeout,
        )
        self.settings = Settings(storage_connection=servers.app_direct, **common)
        faulty = Settings(storage_connection=servers.app_faulty, **common)
        self.settle = timedelta(seconds=self.settings.settle_seconds)
        self.ctx = Context.create(self.settings, self.clock)
        self.handlers = _handlers(self.ctx)
        self.switch = KillSwitch(servers.proxies)
        out_dir = ROOT / "bench-results"
        out_dir.mkdir(exist_ok=True)
        config = WorkerConfig(
            settings=_fields(faulty), backoff_factor=args.backoff_factor, visibility_seconds=8, retry_seconds=1
        )
        self.workers = Workers(config, servers, self.switch, out_dir / f"soak-{args.seed}-workers.log")
        self.sites: dict[str, Site] = {
            name: open_site(name, kind, container, servers) for name, (kind, container) in SITES.items()
        }
        self.customers = Customers(self.handlers, servers, self.sites, self.clock, self._failure)
        self.traffic = Traffic(
            args.seed,
            [
                AccountTraffic(
                    "acme", users=400, requests_per_hour=2.0 * args.volume, bursts_per_day=1.0 * args.volume
                ),
                AccountTraffic(
                    "globex",
                    users=150,
                    requests_per_hour=0.7 * args.volume,
                    bursts_per_day=0.3 * args.volume,
                    deletes_per_day=1.0,
                ),
            ],
        )
        self.chaos = random.Random(args.seed * 7919 + 1)
        self.events = EventLedger()
        self.actions: list[Action] = []
        self.seq = itertools.count()
        self.stats: dict[str, Any] = {
            "upserts": {"requests": 0, "attempts": 0, "acknowledged": 0, "refused": {}},
            "abandoned": [],
            "deletes": {"requests": 0, "attempts": 0},
            "ticks": 0,
            "jobs": {
                "delivered": 0,
                "failed": 0,
                "poisoned": 0,
                "copies": 0,
                "queue_errors": 0,
                "timer_errors": 0,
                "startup_errors": 0,
            },
            "kills": {
                "tick": 0,
                "upsert": 0,
                "at_request": 0,
                "at_commit": 0,
                "timed": 0,
                "unplanned": 0,
                "after_answer": 0,
                "by_proxy": {},
            },
            "wall_seconds_by_call": {},
        }
        self.failures: list[str] = []
        self.kill_log: list[dict[str, Any]] = []
        self.estimates = {"tick": (60.0, 1.0), "upsert": (40.0, 0.3)}  # (requests, seconds) per command, averaged

    # ---------------------------------------------------------------- the run

    def run(self) -> dict[str, Any]:
        self.customers.plan(self.start, self.args.days, self._schedule)
        self.servers.set_rate(self.args.rate)
        step = timedelta(minutes=self.args.step_minutes)
        t, day = self.start, 0
        while t < self.end:
            step_end = min(t + step, self.end)
            for item in self.traffic.plan(t, step_end):
                self._schedule_request(item)
            self._run_actions(before=step_end)
            self._tick(step_end)
            t = step_end
            if (t - self.start) // timedelta(days=1) > day:
                day = (t - self.start) // timedelta(days=1)
                self._progress(f"day {day}")
        self._finish()
        return self._report()

    def _schedule(self, at: datetime, run: Callable[[datetime], None], what: str = "") -> None:
        heapq.heappush(self.actions, Action(at, next(self.seq), run, what))

    def _run_actions(self, before: datetime | None) -> None:
        while self.actions and (before is None or self.actions[0].at < before):
            action = heapq.heappop(self.actions)
            self.clock.set(max(action.at, self.clock.now()))
            action.run(self.clock.now())

    def _progress(self, what: str) -> None:
        if not self.args.quiet:
            s = self.stats
            print(
                f"soak seed {self.args.seed}: {what}, {time.monotonic() - self.started:.0f} s, "
                f"{len(self.events.acknowledged)} events acknowledged, {s['ticks']} ticks, "
                f"{s['kills']['tick'] + s['kills']['upsert']} kills, faults {dict(self._faults()['total'])}",
                file=sys.stderr,
                flush=True,
            )

    # ---------------------------------------------------------------- upserts and deletions (the platform)

    def _schedule_request(self, item: Upsert | DeleteUser) -> None:
        if isinstance(item, Upsert):
            self.stats["upserts"]["requests"] += 1
            self._schedule(item.at, lambda now, item=item: self._upsert(item.account, item.body, 0))
        else:
            self.stats["deletes"]["requests"] += 1
            self._schedule(item.at, lambda now, item=item: self._delete_user(item.account, item.user_id, 0))

    def _upsert(self, account: str, body: dict[str, Any], attempt: int, first: datetime | None = None) -> None:
        first = first or self.clock.now()
        ids = self.events.sent(account, body)
        self.stats["upserts"]["attempts"] += 1
        plan = self._kill_plan("upsert", self.args.upsert_kills)
        outcome = self._call(
            {"op": "upsert", "now": iso(self.clock.now()), "account": account, "body": body}, plan, "upsert"
        )
        status = (outcome.answer or {}).get("status")
        if status == 200:
            self.events.acknowledge(ids)
            self.stats["upserts"]["acknowledged"] += 1
            return
        refused = self.stats["upserts"]["refused"]
        why = "killed" if status is None else ("cold start" if "startup_error" in outcome.answer else str(status))
        refused[why] = refused.get(why, 0) + 1
        again = lambda: self._upsert(account, body, attempt + 1, first)  # noqa: E731
        self._refused(f"upsert of {len(ids)} events to {account}", outcome, attempt, first, again)

    def _delete_user(self, account: str, user_id: str, attempt: int, first: datetime | None = None) -> None:
        first = first or self.clock.now()
        self.stats["deletes"]["attempts"] += 1
        outcome = self._call(
            {"op": "delete_user", "now": iso(self.clock.now()), "account": account, "user_id": user_id}, None, "delete"
        )
        status = (outcome.answer or {}).get("status")
        if status in (200, 404):  # 404: that user never reached the store
            return
        again = lambda: self._delete_user(account, user_id, attempt + 1, first)  # noqa: E731
        self._refused(f"delete of {account}/{user_id}", outcome, attempt, first, again)

    def _refused(self, what: str, outcome: Outcome, attempt: int, first: datetime, again: Callable[[], None]) -> None:
        """A refused request: a 4xx fails the soak; anything else is sent again later, up to --max-attempts."""
        status = (outcome.answer or {}).get("status")
        if status is not None and 400 <= status < 500:
            self._failure(f"{what} refused with {status}: {outcome.answer.get('body')}")
        elif attempt + 1 >= self.args.max_attempts:
            self._abandon(what, first, outcome)
        else:
            # The platform's retry: later, longer after each refusal (past a dead request's claim budget).
            delay = min(61 * 2**attempt, 1800) + self.chaos.uniform(0, 60)
            self._schedule(self.clock.now() + timedelta(seconds=delay), lambda now: again(), "retry")

    def _abandon(self, what: str, first: datetime, outcome: Outcome) -> None:
        """A request the platform could not get acknowledged: a liveness failure of the app, reported."""
        last = outcome.answer or {"killed": outcome.killed}
        self.stats["abandoned"].append(
            {"request": what, "first_sent": iso(first), "attempts": self.args.max_attempts, "last_answer": last}
        )
        self._failure(
            f"{what} first sent {iso(first)} was refused {self.args.max_attempts} times, "
            f"until {iso(self.clock.now())}; last answer {json.dumps(last)[:300]}"
        )

    # ---------------------------------------------------------------- ticks (timer + queue)

    def _tick(self, at: datetime, kills: bool = True) -> dict[str, Any] | None:
        self.clock.set(at)
        self.stats["ticks"] += 1
        plan = self._kill_plan("tick", self.args.tick_kills) if kills else None
        command = {
            "op": "tick",
            "now": iso(at),
            "seed": self.chaos.randrange(1 << 30),
            "copy_rate": self.args.copies if kills else 0,
        }
        outcome = self._call(command, plan, "tick")
        answer = outcome.answer or {}
        jobs = self.stats["jobs"]
        for key, source in (
            ("delivered", "jobs"),
            ("failed", "failed"),
            ("poisoned", "poisoned"),
            ("copies", "copies"),
            ("queue_errors", "queue_errors"),
            ("timer_errors", "timer_errors"),
        ):
            jobs[key] += answer.get(source, 0)
        jobs["startup_errors"] += "startup_error" in answer
        return outcome.answer

    # ---------------------------------------------------------------- kills

    def _kill_plan(self, op: str, share: float) -> KillPlan | None:
        """Whether and where to kill the worker: at a random storage request, at the commit, or after a delay."""
        if self.chaos.random() >= share:
            return None
        requests, seconds = self.estimates[op]
        kind = self.chaos.choice(KILL_KINDS)
        roll = self.chaos.random()
        if roll < 0.25:  # at the commit: the customer's block list (export) or the segment put (ingest)
            return KillPlan(at_request=1, kind=kind, points=EXPORT_COMMITS if op == "tick" else INGEST_COMMITS)
        if op == "tick" and roll < 0.45:
            return KillPlan(after_seconds=self.chaos.uniform(0, seconds), kind=kind)
        return KillPlan(at_request=self.chaos.randint(1, max(1, int(requests))), kind=kind)

    def _call(self, command: dict[str, Any], plan: KillPlan | None, op: str) -> Outcome:
        outcome = self.workers.call(command, plan)
        self.stats["wall_seconds_by_call"][op] = round(
            self.stats["wall_seconds_by_call"].get(op, 0) + outcome.seconds, 1
        )
        kills = self.stats["kills"]
        if outcome.answer is None:
            if plan is None:
                kills["unplanned"] += 1
                self._failure(f"a worker died without being killed during {op} at {command['now']} ({outcome.killed})")
            else:
                kills["tick" if op == "tick" else "upsert"] += 1
                how = "timed" if outcome.killed == "timer" else ("at_commit" if plan.points else "at_request")
                kills[how] = kills.get(how, 0) + 1
                self.kill_log.append(
                    {
                        "at": command["now"],
                        "op": op,
                        "how": how,
                        "request": outcome.killed,
                        "kind": plan.kind if plan.after_seconds is None else None,
                    }
                )
                if outcome.killed and outcome.killed.startswith("request:"):
                    proxy = outcome.killed.split(":", 1)[1]
                    kills["by_proxy"][proxy] = kills["by_proxy"].get(proxy, 0) + 1
        elif outcome.killed_after_answer:
            kills["after_answer"] += 1  # the command completed; that worker was replaced
        elif op in self.estimates:
            requests, seconds = self.estimates[op]
            self.estimates[op] = (0.8 * requests + 0.2 * outcome.requests, 0.8 * seconds + 0.2 * outcome.seconds)
        if outcome.answer and "error" in outcome.answer:
            self._failure(f"worker error during {op} at {command['now']}: {outcome.answer['error']}")
        return outcome

    # ---------------------------------------------------------------- the end

    def _finish(self) -> None:
        """Every request acknowledged (faults still on), then faults off and catch-up until up to date."""
        self._run_actions(before=None)
        self.servers.set_rate(0.0)
        for site in self.sites.values():
            site.restore()
        self._progress("traffic done, catching up")
        now = max(self.clock.now(), self.end)
        for _round in range(30):
            now += timedelta(minutes=11)
            self._tick(now, kills=False)
            lag = self.customers.lag(now, self.settle)
            if not lag:
                self.final = now
                return
            self._progress(f"behind at {iso(now)}: {lag}")
        self.final = now
        self._failure(f"not caught up by {iso(now)}: {self.customers.lag(now, self.settle)}")

    def _faults(self) -> dict[str, dict[str, int]]:
        """Faults injected at random per proxy (the requests that carried a kill are not counted)."""
        per = {}
        for name, proxy in self.servers.proxies.items():
            counts = dict(proxy.injected)
            for (fired_at, kind), n in self.switch.fired.items():
                if fired_at == name:
                    counts[kind] = counts.get(kind, 0) - n
            per[name] = {k: v for k, v in counts.items() if v}
        total: dict[str, int] = {}
        for counts in per.values():
            for kind, n in counts.items():
                total[kind] = total.get(kind, 0) + n
        return {"total": total, **per}

    def _failure(self, message: str) -> None:
        self.failures.append(message)
        if not self.args.quiet:
            print(f"soak FAILURE: {message}", file=sys.stderr, flush=True)

    def _report(self) -> dict[str, Any]:
        self._progress("checking")
        stored: dict[str, list[int]] = {}
        for account in ("acme", "globex"):
            stored.update(
                entry_times(self.ctx.ucd, account, self.start - timedelta(hours=1), self.final + timedelta(hours=1))
            )
        verdict = check(self.events, stored, self.customers.all, self.sites, self.final, self.settle)
        return self._json(verdict)

    def _json(self, verdict: Verdict) -> dict[str, Any]:
        failures = self.failures + verdict.failures
        ok = verdict.ok and not self.failures
        return {
            "ok": ok,
            "seed": self.args.seed,
            "days": self.args.days,
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "lost": verdict.lost,
            "duplicated": verdict.duplicated,
            "events_stored": verdict.stored,
            "events_acknowledged": verdict.acknowledged,
            "events_sent": self.events.transmissions,
            "rows_exported": verdict.rows_exported,
            "windows": verdict.windows_expected,
            "files": verdict.files,
            "files_by_kind": dict(verdict.files_by_kind),
            "faults_injected": self._faults(),
            "storage_requests": {n: p.requests for n, p in self.servers.proxies.items()},
            "kills": self.stats["kills"],
            "worker_processes": self.workers.spawned,
            "checks": summary(verdict),
            "failure_count": verdict.failure_count + len(self.failures),
            "failures": failures[:80],
            "upserts": self.stats["upserts"],
            "deletes": self.stats["deletes"],
            "abandoned": self.stats["abandoned"],
            "ticks": self.stats["ticks"],
            "jobs": self.stats["jobs"],
            "credential_errors_seen": self.customers.credential_errors_seen,
            "stopped_by_revocation": self.customers.stopped_by_revocation,
            "wall_seconds_by_call": self.stats["wall_seconds_by_call"],
            "integrations": [
                {
                    "label": r.spec.label,
                    "id": r.id,
                    "format": r.spec.format,
                    "activated_at": iso(r.activated_at),
                    "frequencies": [[iso(c.effective_from), c.hours] for c in r.frequencies],
                    "deleted_at": iso(r.deleted_at) if r.deleted_at else None,
                }
                for r in self.customers.all
            ],
            "operations": self.customers.calls,
            "kill_log": self.kill_log,
            "settings": {
                "step_minutes": self.args.step_minutes,
                "max_attempts": self.args.max_attempts,
                "rate": self.args.rate,
                "tick_kills": self.args.tick_kills,
                "upsert_kills": self.args.upsert_kills,
                "copies": self.args.copies,
                "volume": self.args.volume,
                "commit_timeout_seconds": self.args.commit_timeout,
                "backoff_factor": self.args.backoff_factor,
                "settle_seconds": self.settings.settle_seconds,
            },
        }

    def close(self) -> None:
        self.workers.stop()


def _fields(settings) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(settings)


def _handlers(ctx) -> dict[str, Callable]:
    """The function app's handlers, running on the soak's context (its clock, its storage names)."""
    sys.path.insert(0, str(ROOT))
    import function_app
    from exporter import triggers

    triggers.use_context(ctx)
    return {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    compress_sdk_backoff(args.backoff_factor)
    servers = start_servers(args.seed)
    soak = None
    try:
        soak = Soak(args, servers)
        return soak.run()
    finally:
        if soak is not None:
            soak.close()
        servers.stop()


def main(argv: list[str] | None = None) -> int:
    # The benchmark's destinations are on this machine over http (exporter/egress.py allows them only so).
    os.environ.setdefault("EXPORT_ALLOW_PRIVATE_ENDPOINTS", "true")
    args = parse_args(argv)
    if args.worker:
        from .soak_worker import child_main

        return child_main()
    report = run(args)
    out = Path(args.out) if args.out else ROOT / "bench-results" / f"soak-{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    brief = {
        k: report[k]
        for k in (
            "ok",
            "seed",
            "days",
            "wall_seconds",
            "events_stored",
            "rows_exported",
            "windows",
            "files",
            "lost",
            "duplicated",
            "kills",
            "failure_count",
        )
    }
    brief["faults_injected"] = report["faults_injected"]["total"]
    print(json.dumps(brief, indent=2))
    if report["failures"]:
        print("failures (first 10):\n  " + "\n  ".join(report["failures"][:10]), file=sys.stderr)
    print(f"report: {out}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
