"""Notifications (exporter/notifications): a loopback receiver gets signed CloudEvents when an integration stops,
recovers and delivers a window; a receiver that is down never delays an export, and gets every event once up.

Signatures are checked by the `standardwebhooks` package and by a verifier written here from the spec."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from exporter.clock import to_unix
from exporter.destinations import open_destination as real_open_destination
from exporter.errors import InputError
from exporter.integrations.model import Status
from exporter.jobs import ExportJob, process_job
from exporter.local.host import tick
from exporter.notifications.config import ALLOW_PRIVATE
from exporter.notifications.sender import attempt_log, drain_notifications
from tests.destination_helpers import behind, destination_from_body
from tests.export_helpers import ACCOUNT, ACT, SETTLE, ExpiringDestination, H
from tests.helpers import call, integration_body


class Receiver:
    """A webhook receiver on loopback: answers 500 while `up` is False; keeps every request it got."""

    def __init__(self) -> None:
        self.up = True
        self.requests: list[tuple[int, dict[str, str], bytes]] = []  # (the status it answered, headers, body)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 204 if receiver.up else 500
                receiver.requests.append((status, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[dict]:
        """The events answered 2xx, in order of arrival."""
        return [json.loads(body) for status, _h, body in self.requests if status < 300]


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE, "true")
    server = Receiver()
    yield server
    server.stop()


def spec_verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Standard Webhooks, from the spec: v1 = base64(HMAC-SHA256(base64-decoded secret, "{id}.{timestamp}.{body}"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split(" "))


def library_verify(secret: str, headers: dict[str, str], body: bytes, monkeypatch) -> dict:
    """The `standardwebhooks` package's verification; its freshness check against the wall clock is set aside
    (the timestamps are the test's simulated time)."""
    monkeypatch.setattr(
        Webhook,
        "_Webhook__verify_timestamp",
        lambda self, header: datetime.fromtimestamp(int(header), tz=timezone.utc),
    )
    return Webhook(secret).verify(body, headers)


def assert_all_signed(receiver: Receiver, secret: str, monkeypatch) -> None:
    assert receiver.requests
    for _status, headers, body in receiver.requests:
        spec_verify(secret, headers, body)
        event = library_verify(secret, headers, body, monkeypatch)
        assert headers["webhook-id"] == event["id"]
        assert event["specversion"] == "1.0" and event["source"].startswith(f"/accounts/{ACCOUNT}/integrations/")
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()).verify(
            receiver.requests[0][2], receiver.requests[0][1]
        )


def notified(ctx, clock, kit, receiver, windows: int) -> tuple[str, str]:
    """An integration `windows` behind, notifying `receiver`; its secret from a rotation (shown once)."""
    notify = {"url": receiver.url, "events": ["stopped", "recovered", "delivered"]}
    iid = behind(ctx, clock, kit, windows, notify=notify)
    rotated = call(ctx, "integrations_rotate_notify_secret", account=ACCOUNT, id=iid)
    assert rotated.status == 200, rotated.body
    return iid, rotated.body["notify"]["secret"]


def refusing(ctx, kit, monkeypatch, expired: bool = True, good_commits: int = 10**6) -> dict:
    """The integration's destination refuses its credentials while `state["expired"]` is true (it turns true
    once `good_commits` files are committed)."""
    state = {"expired": expired, "good_commits": good_commits, "committed": [], "refused": []}
    monkeypatch.setattr(
        ctx,
        "open_destination",
        lambda kind, secret, container, prefix: ExpiringDestination(
            real_open_destination(kind, secret, container, prefix),
            destination_from_body(kit.refused_body(prefix)),
            state,
        ),
    )
    return state


def test_a_stop_a_recovery_and_each_delivered_window_are_told_once_signed(ctx, clock, azure_kit, receiver, monkeypatch):
    iid, secret = notified(ctx, clock, azure_kit, receiver, 4)
    state = refusing(ctx, azure_kit, monkeypatch, expired=False, good_commits=2)
    receiver.up = False  # the first attempts fail: they are sent again, with the same ids
    tick(ctx)
    integration = ctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.CREDENTIAL_ERROR and integration.last_success_end == ACT + 2 * H
    failed_ids = [h["webhook-id"] for _s, h, _b in receiver.requests]
    assert len(failed_ids) == 3
    last = attempt_log(ctx).last(ACCOUNT, iid)
    assert [(a.outcome, a.status) for a in last] == [("retrying", 500)] * 3, "the console's view of the attempts"
    receiver.up = True
    clock.advance(minutes=1)
    assert drain_notifications(ctx) == {"sent": 3}
    assert [(a.outcome, a.status) for a in attempt_log(ctx).last(ACCOUNT, iid)][:3] == [("sent", 204)] * 3
    assert process_job(ctx, ExportJob(ACCOUNT, iid).to_message()).exported == 0, "a stale job changes nothing"
    clock.advance(minutes=10)
    tick(ctx)
    events = receiver.delivered()
    assert sorted(e["id"] for e in events) == sorted(failed_ids), "the retries carry the same ids"
    stops = [e for e in events if e["type"] == "export.integration.stopped"]
    assert len(stops) == 1, "exactly one logical stop"
    assert stops[0]["data"]["reason"] == integration.last_error and azure_kit.refusal_words in integration.last_error
    assert stops[0]["data"]["window"] == {"start": to_unix(ACT + 2 * H), "end": to_unix(ACT + 3 * H)}

    state.update(expired=False, good_commits=10**6)
    update = {"destination": azure_kit.credentials_update()}
    assert call(ctx, "integrations_update", update, account=ACCOUNT, id=iid).status == 200
    tick(ctx)
    events = receiver.delivered()
    recovered = [e for e in events if e["type"] == "export.integration.recovered"]
    assert len(recovered) == 1 and recovered[0]["data"]["window"]["start"] == to_unix(ACT + 2 * H)
    delivered = [e for e in events if e["type"] == "export.window.delivered"]
    runs = sorted(ctx.runs.list(ACCOUNT, iid), key=lambda r: r.window_start)
    assert len(delivered) == len(runs) >= 4 and len({e["id"] for e in delivered}) == len(runs)
    for event, run in zip(sorted(delivered, key=lambda e: e["data"]["window"]["start"]), runs, strict=True):
        data = event["data"]
        assert data["window"] == {"start": run.window_start, "end": run.window_end}
        assert (data["file"], data["rows"], data["bytes"]) == (run.file, run.rows, run.bytes)
        assert data["sha256"] == hashlib.sha256(azure_kit.read(run.file)).hexdigest()
        assert data["account"] == ACCOUNT and data["integration_id"] == iid
    assert_all_signed(receiver, secret, monkeypatch)


def test_a_receiver_down_for_three_hours_delays_no_export_and_gets_every_event_once_up(
    ctx, clock, azure_kit, receiver, monkeypatch
):
    iid, secret = notified(ctx, clock, azure_kit, receiver, 1)
    receiver.up = False
    for step in range(18):  # three hours, a tick every ten minutes
        tick(ctx)
        expected_end = max(k for k in range(1, 10) if ACT + k * H + SETTLE <= clock.now())
        assert ctx.repo.get(ACCOUNT, iid).last_success_end == ACT + expected_end * H, f"on time at step {step}"
        clock.advance(minutes=10)
    assert receiver.requests and not receiver.delivered()
    receiver.up = True
    for _ in range(12):  # the longest retry delay is an hour
        tick(ctx)
        clock.advance(minutes=10)
    runs = ctx.runs.list(ACCOUNT, iid)
    ids = [e["id"] for e in receiver.delivered()]
    assert sorted(set(ids)) == sorted(f"{iid}-{r.window_start}-delivered" for r in runs) and len(runs) >= 4
    assert_all_signed(receiver, secret, monkeypatch)


def test_the_secret_is_shown_once_and_stored_sealed(ctx, azurite_connection, customer_container, receiver):
    body = integration_body(azurite_connection, customer_container.container_name, notify={"url": receiver.url})
    created = call(ctx, "integrations_create", body, account=ACCOUNT)
    assert created.status == 201, created.body
    secret = created.body["notify"].pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert created.body["notify"] == {"url": receiver.url, "events": ["stopped", "recovered", "delivered"]}
    iid = created.body["id"]
    shown = call(ctx, "integrations_show", account=ACCOUNT, id=iid).body
    assert "secret" not in shown["notify"] and secret not in json.dumps(shown)
    entity = ctx.repo.table.get_entity(ACCOUNT, iid)
    assert entity["notify_secret"] and entity["notify_url"] == receiver.url
    assert secret not in json.dumps(dict(entity), default=str)
    same = call(
        ctx, "integrations_update", {"notify": {"url": receiver.url, "events": ["delivered"]}}, account=ACCOUNT, id=iid
    )
    assert same.status == 200 and "secret" not in same.body["notify"], "the same url keeps its secret"
    moved = call(ctx, "integrations_update", {"notify": {"url": receiver.url + "/v2"}}, account=ACCOUNT, id=iid)
    assert moved.body["notify"]["secret"] not in (secret, None)
    removed = call(ctx, "integrations_update", {"notify": None}, account=ACCOUNT, id=iid)
    assert removed.body["notify"] is None
    refused = call(ctx, "integrations_rotate_notify_secret", account=ACCOUNT, id=iid)
    assert refused.status == 409 and refused.body["error"]["field"] == "notify"
    bad = call(
        ctx, "integrations_update", {"notify": {"url": receiver.url, "events": ["opened"]}}, account=ACCOUNT, id=iid
    )
    assert bad.status == 400 and bad.body["error"]["field"] == "notify.events"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://10.1.2.3/hooks",
        "https://169.254.169.254/latest",
        "http://hooks.example.com/in",
    ],
)
def test_a_receiver_on_loopback_or_a_private_address_or_plain_http_is_refused(
    ctx, azurite_connection, customer_container, monkeypatch, url
):
    monkeypatch.delenv(ALLOW_PRIVATE, raising=False)
    body = integration_body(azurite_connection, customer_container.container_name, notify={"url": url})
    refused = call(ctx, "integrations_create", body, account=ACCOUNT)
    assert refused.status == 400 and refused.body["error"]["field"] == "notify.url", refused.body
    assert call(ctx, "integrations_list", account=ACCOUNT).body["integrations"] == [], "nothing half-stored"
    monkeypatch.setenv(ALLOW_PRIVATE, "true")
    if url.startswith("http://hooks"):
        return
    assert call(ctx, "integrations_create", body, account=ACCOUNT).status == 201, "allowed where the setting is on"


def test_a_public_https_url_passes_without_the_setting_and_a_name_resolving_inward_does_not():
    from exporter import egress
    from exporter.notifications.config import check_notify_url

    public = egress.EgressPolicy(resolve=lambda host, port: ["93.184.216.34"])  # no packet leaves: injected
    with egress.using(public):
        assert check_notify_url("https://hooks.example.com/in", "notify.url") == "https://hooks.example.com/in"
    private = egress.EgressPolicy(resolve=lambda host, port: ["10.0.0.7"])
    with egress.using(private), pytest.raises(InputError):
        check_notify_url("https://inward.example.com/in", "notify.url")
