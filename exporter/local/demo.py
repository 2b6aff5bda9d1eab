"""`python -m exporter demo [--destination azure_blob|s3|gcs]`: a demo export end to end, all local.

Starts Azurite on free ports (and moto or gcp-storage-emulator for an S3 or GCS destination, see
demotargets.py), ingests a realistic sample hour by hour on a simulated clock (with resent
duplicates, an event timestamped days ago, an anonymous and a deleted user), creates an integration
into a "customer" container or bucket, ticks through the hours, and shows the files and a few rows.
A narrative goes to stderr; the JSON summary to stdout.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import api
from ..cli import runs_table
from ..clock import ManualClock, iso, parse_instant
from ..context import Context
from ..secrets import new_key
from ..settings import Settings
from .demotargets import DemoTarget, open_demo_target
from .devstorage import start_azurite
from .host import tick
from .progress import Progress

ACCOUNT = "demo-shop"
PRODUCTS = ["sku-100", "sku-200", "sku-300", "sku-400"]
CAMPAIGNS = ["black-friday", "winter-sale", "welcome"]
COUNTRIES = ["TR", "DE", "GB", "US"]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def sample_hour(rng: random.Random, users: int, hour_start: datetime) -> dict:
    """One hour of traffic: page views, carts, purchases and email opens of known and anonymous users."""
    batch = []
    for n in range(users):
        user: dict[str, Any] = {"user_id": f"user-{n:04d}"}
        if n % 10 == 9:
            user = {"user_id": f"anon-{rng.randrange(10**6):06d}"}  # anonymous: no identifiers, no attributes
        else:
            user["identifiers"] = {"email": f"user{n}@example.com"}
            user["attributes"] = {"email": f"user{n}@example.com", "country": COUNTRIES[n % 4], "vip": n % 7 == 0}
        events = []
        for _ in range(rng.randrange(1, 5)):
            at = hour_start + timedelta(seconds=rng.randrange(3600))
            kind = rng.choice(["page_view", "add_to_cart", "purchase", "email_open"])
            params: dict = {}
            if kind in ("add_to_cart", "purchase"):
                params = {"product_id": rng.choice(PRODUCTS), "quantity": rng.randrange(1, 4)}
            if kind == "purchase":
                params.update(
                    price=round(rng.uniform(5, 300), 2), currency="EUR", items=[{"sku": params["product_id"]}]
                )
            if kind == "email_open":
                params = {"campaign": rng.choice(CAMPAIGNS)}
            if kind == "page_view":
                params = {"url": f"https://shop.example.com/p/{rng.randrange(100)}"}
            events.append({"event_name": kind, "timestamp": iso(at), "event_params": params})
        user["events"] = events
        batch.append(user)
    return {"users": batch}


def _call(ctx: Context, operation: str, body=None, **params) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    answer = api.handle(ctx, operation, api.ApiRequest(params=params, body=raw))
    if answer.status >= 400:
        raise SystemExit(f"demo: {operation} refused: {json.dumps(answer.body)}")
    return answer.body


def run_demo(hours: int = 6, users: int = 200, now: str | None = None, destination: str = "azure_blob") -> int:
    start = (
        parse_instant(now, "--now")
        if now
        else datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=hours + 1)
    )
    logging.getLogger().setLevel(logging.WARNING)  # the narrative below is the demo's output
    # The demo's destinations are on this machine over http (exporter/egress.py allows them only so).
    os.environ.setdefault("EXPORT_ALLOW_PRIVATE_ENDPOINTS", "true")
    say("Starting a private Azurite ...")
    azurite = start_azurite()
    try:
        target = open_demo_target(destination, azurite.connection_string)
        try:
            return _demo(azurite.connection_string, start, hours, users, target)
        finally:
            target.stop()
    finally:
        azurite.stop()


def _demo(connection: str, t0: datetime, hours: int, users: int, target: DemoTarget) -> int:
    rng = random.Random(7)
    clock = ManualClock(t0)
    # From settings as the app reads them, with private endpoints allowed: the customer's side is on loopback.
    env = {"AzureWebJobsStorage": connection, "EXPORT_SECRET_KEY": new_key(), "EXPORT_ALLOW_PRIVATE_ENDPOINTS": "true"}
    ctx = Context.create(Settings.from_env(env), clock)

    clock.set(t0 - timedelta(minutes=30))
    before = _call(ctx, "ucd_upsert", sample_hour(rng, users, t0 - timedelta(hours=1)), account=ACCOUNT)
    say(f"Stored {before['stored_events']} {ACCOUNT} events before activation (never exported: no historical export)")
    clock.set(t0)

    destination = target.body
    verified = _call(ctx, "integrations_verify", destination, account=ACCOUNT)
    say(
        f"Verify authentication: ok={verified['ok']}, test file {verified['test_file']['name']} deleted={verified['test_file']['deleted']}"
    )
    integration = _call(
        ctx,
        "integrations_create",
        {
            "name": "warehouse feed",
            "destination": destination,
            "events": [
                {"name": "purchase", "params": ["product_id", "price", "currency", "items"]},
                {"name": "add_to_cart", "params": ["product_id", "quantity"]},
                {"name": "email_open", "params": ["campaign"]},
            ],
            "attributes": ["email", "country"],
            "frequency_hours": 1,
            "status": "active",
        },
        account=ACCOUNT,
    )
    iid = integration["id"]
    say(
        f"Integration {iid} active from {integration['activated_at']} (hourly; destination shown as {json.dumps(integration['destination'])})"
    )

    totals = {"received": 0, "stored": 0, "duplicates": 0}
    with Progress("simulating hours", total=hours) as progress:
        for h in range(hours):
            clock.set(t0 + timedelta(hours=h, minutes=5))
            batch = sample_hour(rng, users, t0 + timedelta(hours=h))
            if h == 1:
                batch["users"][0]["events"].append(
                    {
                        "event_name": "purchase",
                        "timestamp": iso(t0 - timedelta(days=3)),
                        "event_params": {"product_id": "sku-late", "price": 1.0, "currency": "EUR"},
                    }
                )
            for body in (batch, {"users": batch["users"][: users // 4]}):  # a client resends a quarter
                answer = _call(ctx, "ucd_upsert", body, account=ACCOUNT)
                totals["received"] += answer["received_events"]
                totals["stored"] += answer["stored_events"]
                totals["duplicates"] += answer["duplicate_events"]
            if h == 2:
                _call(ctx, "ucd_delete_user", account=ACCOUNT, user_id="user-0001")
            clock.set(t0 + timedelta(hours=h + 1, minutes=3))
            tick(ctx)
            progress.advance()

    say(f"Upserts: {totals['received']} events received, {totals['stored']} stored, {totals['duplicates']} duplicates")
    files = target.names()
    say(f"\nFiles in {target.where}:")
    for name in files:
        say(f"  {name}")
    head = target.read(files[0]).decode() if files else ""
    sample = list(csv.reader(io.StringIO(head, newline="")))[:6]
    say(f"\nFirst rows of {files[0] if files else '-'}:")
    for row in sample:
        say("  " + ",".join(row))
    runs = _call(ctx, "integrations_runs", account=ACCOUNT, id=iid)["runs"]
    say("\nRun history:\n" + runs_table(runs))
    print(
        json.dumps(
            {
                "integration_id": iid,
                "destination": target.kind,
                "files": files,
                "upserts": totals,
                "rows_exported": sum(r["rows"] for r in runs),
                "sample_rows": sample,
            },
            indent=2,
        )
    )
    return 0
