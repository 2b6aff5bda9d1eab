"""A claim transaction applied but answered with a storage timeout keeps every event.

Found by the soak (`python -m bench.soak --days 3 --seed 3`: 79 acknowledged events in no segment):
a claim batch that the table service applied but answered `500 OperationTimedOut` loses its events.

The SDK retries the POST; the retry conflicts with the claims its first attempt created, so the store
falls back to one-by-one creates, each answered 409, and files the events as contested. Their owner
is the request's own segment, which it then commits with its other partitions' events only; waiting
for the owners, it finds that segment committed and counts the events as duplicates. The answer is
200 and the events are in no segment: lost (I1), though acknowledged.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest

from exporter.clock import iso
from exporter.context import Context
from exporter.local.faultproxy import FaultProxy, Rule
from exporter.settings import Settings
from exporter.ucd.request import parse_upsert
from tests.helpers import T0, call

ACCOUNT = "acme"


@pytest.fixture
def table_proxy(azurite_connection):
    upstream = re.search(r"TableEndpoint=(http://[^/;]+)", azurite_connection)[1]
    proxy = FaultProxy(upstream, timeout_seconds=0.05).start()
    yield proxy, azurite_connection.replace(f"TableEndpoint={upstream}", f"TableEndpoint={proxy.url}")
    proxy.stop()


def test_a_claim_batch_applied_but_answered_500_loses_no_event(settings: Settings, clock, table_proxy):
    proxy, connection = table_proxy
    ctx = Context.create(dataclasses.replace(settings, storage_connection=connection), clock)
    body = {
        "users": [
            {
                "user_id": f"u{i}",
                "events": [
                    {
                        "event_name": "purchase",
                        "timestamp": iso(T0 - timedelta(days=1, seconds=i)),
                        "event_params": {"n": i},
                    }
                ],
            }
            for i in range(12)
        ]
    }
    ids = [e.event_id for u in parse_upsert(ACCOUNT, body).users for e in u.events]
    assert len({i[0] for i in ids}) >= 2, "the events span several claim partitions"

    proxy.add(Rule("timeout_applied", method="POST", path=r"\$batch"))  # one partition's claims: applied, answered 500
    answer = call(ctx, "ucd_upsert", body, account=ACCOUNT)
    assert proxy.injected["timeout_applied"] == 1
    assert answer.status in (200, 503), answer.body
    if answer.status == 503:  # refused: the platform sends it again, as often as it takes
        clock.set(T0 + timedelta(minutes=5))
        answer = call(ctx, "ucd_upsert", body, account=ACCOUNT)
        assert answer.status == 200, answer.body

    stored = [
        i
        for batch in ctx.ucd.read_window(ACCOUNT, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
        for i in batch.column("event_id").to_pylist()
    ]
    assert sorted(stored) == sorted(ids), f"acknowledged but not stored: {sorted(set(ids) - set(stored))}"
