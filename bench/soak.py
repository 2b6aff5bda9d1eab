"""`python -m bench.soak`: a chaos soak of ingest and export on a simulated clock (see bench/README.md).

The real scheduler and workers run through the function app's own handlers, in worker processes that
are SIGKILLed at random points, against real storage (two Azurites: ours and the customers') behind
fault proxies that break about 1 % of the calls. Customers upsert all the time (duplicates, late
events, anonymous and deleted users, bursts); the platform retries every refused upsert until it is
acknowledged. Integrations are paused and resumed, re-timed, deleted and recreated; a customer's key
is revoked for hours and then restored. At the end the faults stop, the clock runs on until every
integration is up to date, and the delivered files are checked against the soak's own ledger.
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from .soak_check import Verdict, check, entry_times, summary
from .soak_ledger import EventLedger, FrequencyChange, IntegrationRecord
from .soak_servers import KillSwitch, Servers, compress_sdk_backoff, start_servers
from .soak_sites import AzureBlobSite, Site
from .soak_traffic import AccountTraffic, DeleteUser, Traffic, Upsert
from .soak_worker import KillPlan, Outcome, WorkerConfig, Workers

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "m3Jx0n2dR2bYbQ4dV8kq3G5Qm1u9r2o7Zr1bXq8lY2c="  # a throwaway Fernet key for the private Azurite
START = datetime(2026, 11, 28, 0, 0, 0, tzinfo=timezone.utc)
KILL_KINDS = ("reset_before", "reset_after")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=float, default=30, help="simulated days of traffic (default 30, at least 2)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--step-minutes", type=int, default=30, help="simulated minutes between timer ticks (default 30)")
    p.add_argument("--rate", type=float, default=0.01, help="share of storage calls given a random fault (default 0.01)")
    p.add_argument("--tick-kills", type=float, default=0.08, help="share of ticks whose worker is SIGKILLed (default 0.08)")
    p.add_argument("--upsert-kills", type=float, default=0.03, help="share of upserts killed mid-request (default 0.03)")
    p.add_argument("--copies", type=float, default=0.1, help="share of job deliveries sent again as extra copies (default 0.1)")
    p.add_argument("--max-attempts", type=int, default=10,
                   help="sends of one request before the platform gives up on it and reports it (default 10)")
    p.add_argument("--volume", type=float, default=1.0, help="scales the request rate of every account (default 1)")
    p.add_argument("--commit-timeout", type=int, default=2,
                   help="UCD_COMMIT_TIMEOUT_SECONDS for the soak (default 2: the store waits it out in real time after a failed put)")
    p.add_argument("--backoff-factor", type=float, default=0.02,
                   help="scales the storage SDKs' real-time retry back-off (default 0.02: 15 s becomes 0.3 s)")
    p.add_argument("--out", default=None, help="JSON report path (default bench-results/soak-<seed>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker and args.days < 2:
        p.error("--days must be at least 2 (the scenario's pauses and revocations need room)")
    return args


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


# ------------------------------------------------------------------ the scenario


@dataclass(frozen=True)
class IntegrationSpec:
    label: str
    account: str
    site: str
    prefix: str
    events: tuple[tuple[str, tuple[str, ...]], ...]
    attributes: tuple[str, ...]
    frequency: int
    create_hour: float  # hours after the start

    def body(self, site: Site) -> dict[str, Any]:
        return {"name": self.label, "destination": site.destination(self.prefix),
                "events": [{"name": n, "params": list(p)} for n, p in self.events],
                "attributes": list(self.attributes), "frequency_hours": self.frequency, "status": "active"}


INTEGRATIONS = (
    IntegrationSpec("a-hourly", "acme", "acme", "hourly/", (("purchase", ("price", "currency", "coupon")), ("email_open", ("campaign",))),
                    ("email", "plan"), 1, 0.12),
    IntegrationSpec("a-two", "acme", "acme", "", (("page_view", ("url",)),), (), 2, 0.55),
    IntegrationSpec("a-four", "acme", "acme", "feeds/four",
                    (("search", ("query", "filters")), ("login", ("method", "success")), ("add_to_cart", ("sku", "quantity")),
                     ("purchase", ("sku", "price"))), ("country", "prefs"), 4, 1.3),
    IntegrationSpec("a-six", "acme", "acme-six", "six/", (("add_to_cart", ("sku", "price")), ("purchase", ("price", "quantity"))),
                    ("plan", "score"), 6, 2.7),
    IntegrationSpec("a-twelve", "acme", "acme", "twelve/", (("login", ()), ("search", ("results",))), (), 12, 5.1),
    IntegrationSpec("g-daily", "globex", "globex", "daily/", (("purchase", ("price", "currency")),), ("email",), 24, 0.9),
    IntegrationSpec("g-hourly", "globex", "globex", "g/hourly", (("page_view", ("url", "referrer")), ("email_open", ("subject",))),
                    ("country",), 1, -0.1),  # negative: a share of the run (created a tenth of the way in)
)
RECREATED = IntegrationSpec("a-twelve-2", "acme", "acme", "twelve/", (("login", ("method",)), ("search", ("query",))),
                            ("plan",), 24, 0)
SITES = {"acme": "acme-exports", "acme-six": "acme-six-drop", "globex": "globex-drop"}


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
        common = dict(table_prefix=tag, queue_name=f"jobs-{tag}", ucd_container=f"ucd-{tag}", secret_key=SECRET_KEY,
                      ucd_commit_timeout_seconds=args.commit_timeout)
        self.settings = Settings(storage_connection=servers.app_direct, **common)
        faulty = Settings(storage_connection=servers.app_faulty, **common)
        self.settle = timedelta(seconds=self.settings.settle_seconds)
        self.ctx = Context.create(self.settings, self.clock)
        self.handlers = _handlers(self.ctx)
        self.switch = KillSwitch(servers.proxies)
        out_dir = ROOT / "bench-results"
        out_dir.mkdir(exist_ok=True)
        config = WorkerConfig(settings=_fields(faulty), backoff_factor=args.backoff_factor, visibility_seconds=8, retry_seconds=1)
        self.workers = Workers(config, servers, self.switch, out_dir / f"soak-{args.seed}-workers.log")
        self.sites: dict[str, Site] = {
            name: AzureBlobSite(name, container, servers.customers_faulty, servers.customers_direct, servers.proxies["destination"])
            for name, container in SITES.items()
        }
        self.traffic = Traffic(args.seed, [
            AccountTraffic("acme", users=400, requests_per_hour=2.0 * args.volume, bursts_per_day=1.0 * args.volume),
            AccountTraffic("globex", users=150, requests_per_hour=0.7 * args.volume, bursts_per_day=0.3 * args.volume,
                           burst_users=100, deletes_per_day=1.0),
        ])
        self.chaos = random.Random(args.seed * 7919 + 1)
        self.events = EventLedger()
        self.records: dict[str, IntegrationRecord] = {}  # label -> the live (or last) record
        self.all_records: list[IntegrationRecord] = []
        self.actions: list[Action] = []
        self.seq = itertools.count()
        self.stats: dict[str, Any] = {
            "upserts": {"requests": 0, "attempts": 0, "acknowledged": 0, "refused": {}}, "abandoned": [],
            "deletes": {"requests": 0, "attempts": 0},
            "ticks": 0, "jobs": {"delivered": 0, "failed": 0, "poisoned": 0, "copies": 0, "queue_errors": 0, "timer_errors": 0,
                     "startup_errors": 0},
            "kills": {"tick": 0, "upsert": 0, "at_request": 0, "at_commit": 0, "timed": 0, "unplanned": 0, "by_proxy": {}},
            "credential_errors_seen": 0, "operations": [], "wall_seconds_by_call": {},
        }
        self.failures: list[str] = []
        self.kill_log: list[dict[str, Any]] = []
        self.estimates = {"tick": (60.0, 1.0), "upsert": (40.0, 0.3)}  # (requests, seconds) per command, averaged

    # ---------------------------------------------------------------- the run

    def run(self) -> dict[str, Any]:
        self._plan_scenario()
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
            print(f"soak seed {self.args.seed}: {what}, {time.monotonic() - self.started:.0f} s, "
                  f"{len(self.events.acknowledged)} events acknowledged, {s['ticks']} ticks, "
                  f"{s['kills']['tick'] + s['kills']['upsert']} kills, faults {dict(self._faults()['total'])}",
                  file=sys.stderr, flush=True)

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
        outcome = self._call({"op": "upsert", "now": iso(self.clock.now()), "account": account, "body": body}, plan, "upsert")
        status = (outcome.answer or {}).get("status")
        if status == 200:
            self.events.acknowledge(ids)
            self.stats["upserts"]["acknowledged"] += 1
            return
        refused = self.stats["upserts"]["refused"]
        why = "killed" if status is None else ("cold start" if "startup_error" in outcome.answer else str(status))
        refused[why] = refused.get(why, 0) + 1
        if status is not None and 400 <= status < 500:
            self._failure(f"upsert refused with {status}: {outcome.answer.get('body')}")
            return
        if attempt + 1 >= self.args.max_attempts:
            self._abandon(f"upsert of {len(ids)} events to {account}", first, outcome)
            return
        self._retry(attempt, lambda now: self._upsert(account, body, attempt + 1, first))

    def _delete_user(self, account: str, user_id: str, attempt: int, first: datetime | None = None) -> None:
        first = first or self.clock.now()
        self.stats["deletes"]["attempts"] += 1
        outcome = self._call({"op": "delete_user", "now": iso(self.clock.now()), "account": account, "user_id": user_id},
                             None, "delete")
        status = (outcome.answer or {}).get("status")
        if status in (200, 404):  # 404: that user never reached the store
            return
        if status is not None and 400 <= status < 500:
            self._failure(f"delete of {user_id} refused with {status}: {outcome.answer.get('body')}")
            return
        if attempt + 1 >= self.args.max_attempts:
            self._abandon(f"delete of {account}/{user_id}", first, outcome)
            return
        self._retry(attempt, lambda now: self._delete_user(account, user_id, attempt + 1, first))

    def _retry(self, attempt: int, run: Callable[[datetime], None]) -> None:
        """The platform's retry: later, longer after each refusal (past a dead request's claim budget)."""
        delay = min(61 * 2 ** attempt, 1800) + self.chaos.uniform(0, 60)
        self._schedule(self.clock.now() + timedelta(seconds=delay), run, "retry")

    def _abandon(self, what: str, first: datetime, outcome: Outcome) -> None:
        """A request the platform could not get acknowledged: a liveness failure of the app, reported."""
        last = outcome.answer or {"killed": outcome.killed}
        self.stats["abandoned"].append({"request": what, "first_sent": iso(first), "attempts": self.args.max_attempts,
                                        "last_answer": last})
        self._failure(f"{what} first sent {iso(first)} was refused {self.args.max_attempts} times, "
                      f"until {iso(self.clock.now())}; last answer {json.dumps(last)[:300]}")

    # ---------------------------------------------------------------- ticks (timer + queue)

    def _tick(self, at: datetime, kills: bool = True) -> dict[str, Any] | None:
        self.clock.set(at)
        self.stats["ticks"] += 1
        plan = self._kill_plan("tick", self.args.tick_kills) if kills else None
        command = {"op": "tick", "now": iso(at), "seed": self.chaos.randrange(1 << 30), "copy_rate": self.args.copies if kills else 0}
        outcome = self._call(command, plan, "tick")
        answer = outcome.answer or {}
        jobs = self.stats["jobs"]
        for key, source in (("delivered", "jobs"), ("failed", "failed"), ("poisoned", "poisoned"), ("copies", "copies"),
                            ("queue_errors", "queue_errors"), ("timer_errors", "timer_errors")):
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
            method, path = ("PUT", r"comp=blocklist") if op == "tick" else ("PUT", r"\.parquet")
            return KillPlan(at_request=1, kind=kind, method=method, path=path)
        if op == "tick" and roll < 0.45:
            return KillPlan(after_seconds=self.chaos.uniform(0, seconds), kind=kind)
        return KillPlan(at_request=self.chaos.randint(1, max(1, int(requests))), kind=kind)

    def _call(self, command: dict[str, Any], plan: KillPlan | None, op: str) -> Outcome:
        outcome = self.workers.call(command, plan)
        self.stats["wall_seconds_by_call"][op] = round(self.stats["wall_seconds_by_call"].get(op, 0) + outcome.seconds, 1)
        kills = self.stats["kills"]
        if outcome.answer is None:
            if plan is None:
                kills["unplanned"] += 1
                self._failure(f"a worker died without being killed during {op} at {command['now']} ({outcome.killed})")
            else:
                kills["tick" if op == "tick" else "upsert"] += 1
                how = "timed" if outcome.killed == "timer" else ("at_commit" if plan.path else "at_request")
                kills[how] = kills.get(how, 0) + 1
                self.kill_log.append({"at": command["now"], "op": op, "how": how, "request": outcome.killed,
                                      "kind": plan.kind if plan.after_seconds is None else None})
                if outcome.killed and outcome.killed.startswith("request:"):
                    proxy = outcome.killed.split(":", 1)[1]
                    kills["by_proxy"][proxy] = kills["by_proxy"].get(proxy, 0) + 1
        elif op in self.estimates:
            requests, seconds = self.estimates[op]
            self.estimates[op] = (0.8 * requests + 0.2 * outcome.requests, 0.8 * seconds + 0.2 * outcome.seconds)
        if outcome.answer and "error" in outcome.answer:
            self._failure(f"worker error during {op} at {command['now']}: {outcome.answer['error']}")
        return outcome

    # ---------------------------------------------------------------- the customers' operations

    def _plan_scenario(self) -> None:
        hours = self.args.days * 24
        for spec in INTEGRATIONS:
            at = spec.create_hour if spec.create_hour >= 0 else -spec.create_hour * hours
            self._schedule(self.start + timedelta(hours=at), lambda now, spec=spec: self._create(spec), f"create {spec.label}")
        h = lambda share, plus=0.0: self.start + timedelta(hours=share * hours + plus)  # noqa: E731
        self._schedule(h(0.25), lambda now: self._simple("a-four", "pause"), "pause a-four")
        self._schedule(h(0.25, 7), lambda now: self._simple("a-four", "resume"), "resume a-four")
        self._schedule(h(0.35), lambda now: self._frequency("a-two", 6), "a-two every 6 h")
        self._schedule(h(0.45), lambda now: self._revoke("acme-six"), "revoke acme-six")
        self._schedule(h(0.45, 1), lambda now: self._update_refused("a-six"), "update a-six with the revoked key")
        self._schedule(h(0.45, 9), lambda now: self._restore("acme-six"), "restore acme-six")
        self._schedule(h(0.6), lambda now: self._delete("a-twelve"), "delete a-twelve")
        self._schedule(h(0.6, 0.5), lambda now: self._create(RECREATED), "recreate a-twelve")
        self._schedule(h(0.7), lambda now: self._frequency("a-hourly", 2), "a-hourly every 2 h")
        self._schedule(h(0.8), lambda now: self._revoke("globex"), "revoke globex")
        self._schedule(h(0.8, 5), lambda now: self._restore("globex"), "restore globex")

    def _api(self, handler: str, method: str, url: str, route: dict[str, str], body: Any = None) -> tuple[int, Any]:
        """A management call through the app's HTTP handler (no random faults: a lost create would be ambiguous)."""
        import azure.functions as func

        request = func.HttpRequest(method, url, body=b"" if body is None else json.dumps(body).encode(),
                                   route_params=route, params={}, headers={"Content-Type": "application/json"})
        with self.servers.calm():
            response = self.handlers[handler](request)
        answer = json.loads(response.get_body() or b"null")
        if method != "GET":
            self.stats["operations"].append({"at": iso(self.clock.now()), "call": f"{method} {url}", "status": response.status_code})
        return response.status_code, answer

    def _integration_url(self, record: IntegrationRecord, tail: str = "") -> tuple[str, dict[str, str]]:
        return f"/api/accounts/{record.account}/integrations/{record.id}{tail}", {"account": record.account, "id": record.id}

    def _create(self, spec: IntegrationSpec) -> None:
        status, answer = self._api("integrations", "POST", f"/api/accounts/{spec.account}/integrations",
                                   {"account": spec.account}, spec.body(self.sites[spec.site]))
        if status != 201:
            self._failure(f"create {spec.label}: {status} {answer}")
            return
        activated = datetime.fromisoformat(answer["activated_at"].replace("Z", "+00:00"))
        record = IntegrationRecord(answer["id"], spec.label, spec.account, spec.site, spec.prefix, spec.events,
                                   spec.attributes, activated, [FrequencyChange(activated, spec.frequency)])
        self.records[spec.label] = record
        self.all_records.append(record)

    def _simple(self, label: str, verb: str) -> None:
        record = self.records[label]
        url, route = self._integration_url(record, f"/{verb}")
        status, answer = self._api(f"integration_{verb}", "POST", url, route)
        if status != 200 or answer["status"] != ("paused" if verb == "pause" else "active"):
            self._failure(f"{verb} {label}: {status} {answer}")

    def _frequency(self, label: str, hours: int) -> None:
        record = self.records[label]
        url, route = self._integration_url(record)
        status, answer = self._api("integration", "PATCH", url, route, {"frequency_hours": hours})
        if status != 200:
            self._failure(f"frequency of {label}: {status} {answer}")
            return
        since = answer["last_success_end"] or answer["activated_at"]
        record.frequencies.append(FrequencyChange(datetime.fromisoformat(since.replace("Z", "+00:00")), hours))

    def _delete(self, label: str) -> None:
        record = self.records[label]
        url, route = self._integration_url(record)
        status, answer = self._api("integration", "DELETE", url, route)
        if status != 200:
            self._failure(f"delete {label}: {status} {answer}")
            return
        record.deleted_at = self.clock.now()

    def _revoke(self, site: str) -> None:
        self.sites[site].revoke()

    def _update_refused(self, label: str) -> None:
        """While the key is revoked, an update with it must fail verification (I6: only verified credentials)."""
        record = self.records[label]
        url, route = self._integration_url(record)
        status, answer = self._api("integration", "PATCH", url, route,
                                   {"destination": {"connection_string": self.servers.customers_faulty}})
        if status != 422:
            self._failure(f"update of {label} with a revoked key answered {status}, not 422: {answer}")

    def _restore(self, site: str) -> None:
        """The customer's new key works again: they put it into every integration of that destination."""
        self.sites[site].restore()
        for record in self._live():
            if record.site != site:
                continue
            url, route = self._integration_url(record)
            status, shown = self._api("integration", "GET", url, route)
            if shown.get("status") == "credential_error":
                self.stats["credential_errors_seen"] += 1
            status, answer = self._api("integration", "PATCH", url, route,
                                       {"destination": {"connection_string": self.servers.customers_faulty}})
            if status != 200 or answer["status"] != "active":
                self._failure(f"restoring {record.label}: {status} {answer}")

    def _live(self) -> list[IntegrationRecord]:
        return [r for r in self.all_records if r.deleted_at is None]

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
            lag = self._lag(now)
            if not lag:
                self.final = now
                return
            self._progress(f"behind at {iso(now)}: {lag}")
        self.final = now
        self._failure(f"not caught up by {iso(now)}: {self._lag(now)}")

    def _expected_end(self, record: IntegrationRecord, now: datetime) -> str | None:
        """last_success_end once every window due at `now` is delivered (None: no window due yet)."""
        windows = list(record.windows(now, self.settle))
        return _api_iso(windows[-1][1]) if windows else None

    def _lag(self, now: datetime) -> dict[str, str]:
        """The live integrations not yet up to date at `now`, with where they stand."""
        lag = {}
        for record in self._live():
            url, route = self._integration_url(record)
            _status, shown = self._api("integration", "GET", url, route)
            expected = self._expected_end(record, now)
            if shown.get("status") != "active" or shown.get("last_success_end") != expected:
                lag[record.label] = f"{shown.get('status')} at {shown.get('last_success_end')}, expected {expected}"
        return lag

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
            stored.update(entry_times(self.ctx.ucd, account, self.start - timedelta(hours=1), self.final + timedelta(hours=1)))
        verdict = check(self.events, stored, self.all_records, self.sites, self.final, self.settle)
        return self._json(verdict)

    def _json(self, verdict: Verdict) -> dict[str, Any]:
        failures = self.failures + verdict.failures
        ok = verdict.ok and not self.failures
        return {
            "ok": ok, "seed": self.args.seed, "days": self.args.days,
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "lost": verdict.lost, "duplicated": verdict.duplicated,
            "events_stored": verdict.stored, "events_acknowledged": verdict.acknowledged,
            "events_sent": self.events.transmissions, "rows_exported": verdict.rows_exported,
            "windows": verdict.windows_expected, "files": verdict.files,
            "faults_injected": self._faults(), "storage_requests": {n: p.requests for n, p in self.servers.proxies.items()},
            "kills": self.stats["kills"], "worker_processes": self.workers.spawned,
            "checks": summary(verdict), "failure_count": verdict.failure_count + len(self.failures),
            "failures": failures[:80],
            "upserts": self.stats["upserts"], "deletes": self.stats["deletes"], "abandoned": self.stats["abandoned"],
            "ticks": self.stats["ticks"],
            "jobs": self.stats["jobs"], "credential_errors_seen": self.stats["credential_errors_seen"],
            "wall_seconds_by_call": self.stats["wall_seconds_by_call"],
            "integrations": [{"label": r.label, "id": r.id, "activated_at": iso(r.activated_at),
                              "frequencies": [[iso(c.effective_from), c.hours] for c in r.frequencies],
                              "deleted_at": iso(r.deleted_at) if r.deleted_at else None} for r in self.all_records],
            "operations": self.stats["operations"], "kill_log": self.kill_log,
            "settings": {"step_minutes": self.args.step_minutes, "max_attempts": self.args.max_attempts,
                         "rate": self.args.rate, "tick_kills": self.args.tick_kills,
                         "upsert_kills": self.args.upsert_kills, "copies": self.args.copies, "volume": self.args.volume,
                         "commit_timeout_seconds": self.args.commit_timeout, "backoff_factor": self.args.backoff_factor,
                         "settle_seconds": self.settings.settle_seconds},
        }

    def close(self) -> None:
        self.workers.stop()


def _api_iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


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
    args = parse_args(argv)
    if args.worker:
        from .soak_worker import child_main

        return child_main()
    report = run(args)
    out = Path(args.out) if args.out else ROOT / "bench-results" / f"soak-{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    brief = {k: report[k] for k in ("ok", "seed", "days", "wall_seconds", "events_stored", "rows_exported", "windows",
                                    "files", "lost", "duplicated", "kills", "failure_count")}
    brief["faults_injected"] = report["faults_injected"]["total"]
    print(json.dumps(brief, indent=2))
    if report["failures"]:
        print("failures (first 10):\n  " + "\n  ".join(report["failures"][:10]), file=sys.stderr)
    print(f"report: {out}", file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
