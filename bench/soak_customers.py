"""The customers' side of the soak: their integrations and what they do with them, through the
function app's HTTP handlers, recorded in the soak's ledger as the API answered."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from exporter.local.host import json_request

from .soak_ledger import FrequencyChange, IntegrationRecord, IntegrationSpec
from .soak_servers import Servers
from .soak_sites import Site


def integration_body(spec: IntegrationSpec, site: Site) -> dict[str, Any]:
    """The body that creates the integration `spec` describes."""
    return {
        "name": spec.label,
        "destination": site.destination(spec.prefix),
        "events": [{"name": n, "params": list(p)} for n, p in spec.events],
        "attributes": list(spec.attributes),
        "frequency_hours": spec.frequency,
        "status": "active",
        "format": spec.format,
    }


INTEGRATIONS = (
    IntegrationSpec(
        "a-hourly",
        "acme",
        "acme",
        "hourly/",
        (("purchase", ("price", "currency", "coupon")), ("email_open", ("campaign",))),
        ("email", "plan"),
        1,
        0.12,
    ),
    IntegrationSpec("a-two", "acme", "acme-s3", "", (("page_view", ("url",)),), (), 2, 0.55),
    IntegrationSpec(
        "a-four",
        "acme",
        "acme-s3",
        "feeds/four",
        (
            ("search", ("query", "filters")),
            ("login", ("method", "success")),
            ("add_to_cart", ("sku", "quantity")),
            ("purchase", ("sku", "price")),
        ),
        ("country", "prefs"),
        4,
        1.3,
        "csv.gz",
    ),
    IntegrationSpec(
        "a-six",
        "acme",
        "acme-six",
        "six/",
        (("add_to_cart", ("sku", "price")), ("purchase", ("price", "quantity"))),
        ("plan", "score"),
        6,
        2.7,
    ),
    IntegrationSpec("a-twelve", "acme", "acme", "twelve/", (("login", ()), ("search", ("results",))), (), 12, 5.1),
    IntegrationSpec(
        "g-daily",
        "globex",
        "globex-gcs",
        "daily/",
        (("purchase", ("price", "currency")),),
        ("email",),
        24,
        0.9,
        "csv.gz",
    ),
    IntegrationSpec(
        "g-hourly",
        "globex",
        "globex",
        "g/hourly",
        (("page_view", ("url", "referrer")), ("email_open", ("subject",))),
        ("country",),
        1,
        -0.1,
    ),
)
RECREATED = IntegrationSpec(
    "a-twelve-2", "acme", "acme", "twelve/", (("login", ("method",)), ("search", ("query",))), ("plan",), 24, 0
)
# Each customer destination: its type and container or bucket. Seven integrations: two on Azure Blob
# (one deleted and recreated), three on S3, two on GCS; one destination of each type is revoked.
SITES = {
    "acme": ("azure_blob", "acme-exports"),
    "acme-s3": ("s3", "acme-s3-exports"),
    "acme-six": ("gcs", "acme-six-drop"),
    "globex": ("s3", "globex-drop"),
    "globex-gcs": ("gcs", "globex-daily"),
}

Schedule = Callable[[datetime, Callable[[datetime], None], str], None]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def api_iso(when: datetime) -> str:
    """The API's form of an instant (milliseconds, Z)."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class Customers:
    """Create, pause, resume, re-time, delete, revoke and restore, each through the app's handlers.

    Random faults are held off during these calls: a create whose answer is lost could not be told
    from one that failed, and the customers are not what is being soaked.
    """

    handlers: dict[str, Callable]
    servers: Servers
    sites: dict[str, Site]
    clock: Any
    fail: Callable[[str], None]
    records: dict[str, IntegrationRecord] = field(default_factory=dict)  # label -> record
    calls: list[dict[str, Any]] = field(default_factory=list)
    credential_errors_seen: int = 0
    stopped_by_revocation: dict[str, list[str]] = field(default_factory=dict)  # destination type -> labels

    def plan(self, start: datetime, days: float, schedule: Schedule) -> None:
        """The month's scenario; times are shares of the run, so a short run has every step too."""
        hours = days * 24
        for spec in INTEGRATIONS:
            at = spec.create_hour if spec.create_hour >= 0 else -spec.create_hour * hours
            schedule(start + timedelta(hours=at), lambda now, spec=spec: self.create(spec), f"create {spec.label}")
        h = lambda share, plus=0.0: start + timedelta(hours=share * hours + plus)  # noqa: E731
        schedule(h(0.15), lambda now: self.sites["acme"].revoke(), "revoke acme (Azure)")
        schedule(h(0.15, 1), lambda now: self.update_refused("a-hourly"), "update a-hourly with the revoked key")
        schedule(h(0.15, 4), lambda now: self.restore("acme"), "restore acme")
        schedule(h(0.25), lambda now: self.pause_or_resume("a-four", "pause"), "pause a-four")
        schedule(h(0.25, 7), lambda now: self.pause_or_resume("a-four", "resume"), "resume a-four")
        schedule(h(0.35), lambda now: self.frequency("a-two", 6), "a-two every 6 h")
        schedule(h(0.45), lambda now: self.sites["acme-six"].revoke(), "revoke acme-six (GCS)")
        schedule(h(0.45, 1), lambda now: self.update_refused("a-six"), "update a-six with the revoked key")
        schedule(h(0.45, 9), lambda now: self.restore("acme-six"), "restore acme-six")
        schedule(h(0.6), lambda now: self.delete("a-twelve"), "delete a-twelve")
        schedule(h(0.6, 0.5), lambda now: self.create(RECREATED), "recreate a-twelve")
        schedule(h(0.7), lambda now: self.frequency("a-hourly", 2), "a-hourly every 2 h")
        schedule(h(0.8), lambda now: self.sites["globex"].revoke(), "revoke globex (S3)")
        schedule(h(0.8, 1), lambda now: self.update_refused("g-hourly"), "update g-hourly with the revoked key")
        schedule(h(0.8, 5), lambda now: self.restore("globex"), "restore globex")

    @property
    def all(self) -> list[IntegrationRecord]:
        return list(self.records.values())

    def live(self) -> list[IntegrationRecord]:
        return [r for r in self.records.values() if r.deleted_at is None]

    # ---------------------------------------------------------------- the calls

    def _call(self, handler: str, method: str, url: str, route: dict[str, str], body: Any = None) -> tuple[int, Any]:
        request = json_request(method, url, route, body)
        with self.servers.calm():
            response = self.handlers[handler](request)
        if method != "GET":
            self.calls.append(
                {"at": self.clock.now().isoformat(), "call": f"{method} {url}", "status": response.status_code}
            )
        return response.status_code, json.loads(response.get_body() or b"null")

    def _on(
        self, record: IntegrationRecord, handler: str, method: str, tail: str = "", body: Any = None
    ) -> tuple[int, Any]:
        url = f"/api/accounts/{record.spec.account}/integrations/{record.id}{tail}"
        return self._call(handler, method, url, {"account": record.spec.account, "id": record.id}, body)

    def create(self, spec: IntegrationSpec) -> None:
        status, answer = self._call(
            "integrations",
            "POST",
            f"/api/accounts/{spec.account}/integrations",
            {"account": spec.account},
            integration_body(spec, self.sites[spec.site]),
        )
        if status != 201:
            self.fail(f"create {spec.label}: {status} {answer}")
            return
        activated = _instant(answer["activated_at"])
        self.records[spec.label] = IntegrationRecord(
            answer["id"], spec, activated, [FrequencyChange(activated, spec.frequency)]
        )

    def pause_or_resume(self, label: str, verb: str) -> None:
        status, answer = self._on(self.records[label], f"integration_{verb}", "POST", f"/{verb}")
        if status != 200 or answer["status"] != ("paused" if verb == "pause" else "active"):
            self.fail(f"{verb} {label}: {status} {answer}")

    def frequency(self, label: str, hours: int) -> None:
        """A new frequency applies from last_success_end (or activation), as the answer says it stands,
        unless the window starting there has begun (its run record exists): then from that window's end."""
        record = self.records[label]
        status, answer = self._on(record, "integration", "PATCH", body={"frequency_hours": hours})
        if status != 200:
            self.fail(f"frequency of {label}: {status} {answer}")
            return
        start = _instant(answer["last_success_end"] or answer["activated_at"])
        status, runs = self._on(record, "integration_runs", "GET", "/runs")
        if status != 200:
            self.fail(f"runs of {label}: {status} {runs}")
            return
        begun = [r for r in runs["runs"] if r["window_start"] == int(start.timestamp()) and r["attempts"] > 0]
        effective = datetime.fromtimestamp(begun[0]["window_end"], timezone.utc) if begun else start
        record.frequencies.append(FrequencyChange(effective, hours))

    def delete(self, label: str) -> None:
        record = self.records[label]
        status, answer = self._on(record, "integration", "DELETE")
        if status != 200:
            self.fail(f"delete {label}: {status} {answer}")
            return
        record.deleted_at = self.clock.now()

    def _new_key(self, record: IntegrationRecord) -> dict[str, Any]:
        return {"destination": self.sites[record.spec.site].credentials_update()}

    def update_refused(self, label: str) -> None:
        """While the key is revoked, an update with it must fail verification (I6: only verified credentials)."""
        record = self.records[label]
        status, answer = self._on(record, "integration", "PATCH", body=self._new_key(record))
        if status != 422:
            self.fail(f"update of {label} with a revoked key answered {status}, not 422: {answer}")

    def restore(self, site: str) -> None:
        """The customer's key works again: they put it into every integration of that destination (verified)."""
        self.sites[site].restore()
        for record in self.live():
            if record.spec.site != site:
                continue
            _status, shown = self._on(record, "integration", "GET")
            if shown.get("status") == "credential_error":
                self.credential_errors_seen += 1
                self.stopped_by_revocation.setdefault(self.sites[site].kind, []).append(record.spec.label)
            status, answer = self._on(record, "integration", "PATCH", body=self._new_key(record))
            if status != 200 or answer["status"] != "active":
                self.fail(f"restoring {record.spec.label}: {status} {answer}")

    def lag(self, now: datetime, settle: timedelta) -> dict[str, str]:
        """The live integrations not yet up to date at `now`, with where they stand."""
        behind = {}
        for record in self.live():
            _status, shown = self._on(record, "integration", "GET")
            windows = list(record.windows(now, settle))
            expected = api_iso(windows[-1][1]) if windows else None
            if shown.get("status") != "active" or shown.get("last_success_end") != expected:
                behind[record.spec.label] = (
                    f"{shown.get('status')} at {shown.get('last_success_end')}, expected {expected}"
                )
        return behind
