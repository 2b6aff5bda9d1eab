"""`serve`, the local stand-in for the Functions host: HTTP routes, timer and queue listener together."""
import json
import time
import urllib.error
import urllib.request

import pytest

from exporter.local.serve import LocalHost
from tests.conftest import T0, integration_body


def _request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def local(ctx):
    host = LocalHost(ctx, port=0, timer_seconds=0.2, queue_poll_seconds=0.1).start()
    yield host
    host.stop()


def test_http_timer_and_queue_deliver_a_window(local, ctx, clock, customer_container, azurite_connection):
    status, created = _request("POST", local.url + "accounts/acme/integrations",
                               integration_body(azurite_connection, customer_container.container_name))
    assert status == 201
    status, answer = _request("POST", local.url + "ucd/acme/upsert", {"users": [{"user_id": "u", "events": [
        {"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z"}]}]})
    assert (status, answer["stored_events"]) == (200, 1)
    assert _request("GET", local.url + "ucd/acme/catalog")[1]["events"] == {"purchase": []}
    assert _request("GET", local.url + "nope")[0] == 404
    status, error = _request("POST", local.url + "ucd/acme/upsert", {"users": "x"})
    assert status == 400 and error["error"]["field"] == "users"

    clock.set(T0.replace(hour=11, minute=5))  # the timer runs on the injected clock
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(customer_container.list_blobs(name_starts_with="insider/acme_")):
        time.sleep(0.1)  # waiting on the real background threads, not on simulated time
    names = [b.name for b in customer_container.list_blobs(name_starts_with="insider/acme_")]
    assert names == [f"insider/acme_events_{created['id']}_1795860000_1795863600.csv"]
    status, runs = _request("GET", local.url + f"accounts/acme/integrations/{created['id']}/runs")
    assert status == 200 and runs["runs"][0]["rows"] == 1
