"""`serve`, the local stand-in for the Functions host: HTTP routes, timer and queue listener together."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from exporter.local.serve import LocalHost
from tests.helpers import T0, integration_body


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
    status, created = _request(
        "POST",
        local.url + "accounts/acme/integrations",
        integration_body(azurite_connection, customer_container.container_name),
    )
    assert status == 201
    status, answer = _request(
        "POST",
        local.url + "ucd/acme/upsert",
        {"users": [{"user_id": "u", "events": [{"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z"}]}]},
    )
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


# ------------------------------------------------------------------ malformed requests, with raw sockets

BODY_TIMEOUT = 1.0
UPSERT = json.dumps(
    {"users": [{"user_id": "u", "events": [{"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z"}]}]}
).encode()


@pytest.fixture
def quick(ctx):
    """A host whose body timeout is short, so a client that stops sending is refused within the test."""
    host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, body_timeout=BODY_TIMEOUT).start()
    yield host
    host.stop()


def _connect(host: LocalHost) -> socket.socket:
    return socket.create_connection(host.server.server_address[:2], timeout=30)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Read a whole answer (the server closes after it): status, headers, JSON body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert headers["content-type"] == "application/json", (status_line, headers, body)
    return int(status_line.split()[1]), headers, json.loads(body)


def _raw(host: LocalHost, request: bytes) -> tuple[int, dict[str, str], dict]:
    sock = _connect(host)
    sock.sendall(request)
    return _answer(sock)


def _post(path: str, headers: str, body: bytes = b"") -> bytes:
    return f"POST /api/{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\r\n".encode() + body


@pytest.mark.parametrize(
    "headers, status, field",
    [
        ("Content-Length: abc\r\n", 400, "Content-Length"),
        ("Content-Length: -1\r\n", 400, "Content-Length"),
        ("Content-Length: 1e3\r\n", 400, "Content-Length"),
        ("Content-Length: 5\r\nContent-Length: 6\r\n", 400, "Content-Length"),
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400, "Content-Length"),
        ("Transfer-Encoding: gzip\r\n", 501, "Transfer-Encoding"),
        ("", 411, "Content-Length"),
        (f"Content-Length: {16 * 1024 * 1024 + 1}\r\n", 413, "Content-Length"),
        ("Transfer-Encoding: chunked\r\n\r\nFFFFFFF", 413, "body"),
        ("Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "body"),
        ("Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX\r\n", 400, "body"),
    ],
)
def test_a_malformed_body_framing_is_a_json_4xx_naming_the_header_or_the_body(quick, ctx, headers, status, field):
    answer_status, _, body = _raw(quick, _post("ucd/acme/upsert", headers))
    assert (answer_status, body["error"]["field"]) == (status, field), body
    assert body["error"]["message"].startswith(f"{field}: ")
    assert ctx.ucd.catalog("acme")["events"] == {}, "nothing stored"


def test_a_body_shorter_than_announced_is_a_400_after_the_timeout_and_others_are_answered_meanwhile(quick):
    stalled = _connect(quick)
    stalled.sendall(_post("ucd/acme/upsert", f"Content-Length: {len(UPSERT) + 10}\r\n", UPSERT))
    started = time.monotonic()
    status, _, catalog = _raw(quick, b"GET /api/ucd/acme/catalog HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, catalog["events"]) == (200, {}), "another client is answered while one stalls"
    status, _, body = _answer(stalled)
    assert (status, body["error"]["field"]) == (400, "body"), body
    assert BODY_TIMEOUT * 0.9 <= time.monotonic() - started < BODY_TIMEOUT + 10


def test_a_chunked_body_is_decoded(quick, ctx):
    chunks = (
        b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (UPSERT[:10], UPSERT[10:]))
        + b"0\r\nX-Trailer: t\r\n\r\n"
    )
    status, _, body = _raw(quick, _post("ucd/acme/upsert", "Transfer-Encoding: chunked\r\n", chunks))
    assert (status, body["stored_events"]) == (200, 1), body
    assert ctx.ucd.catalog("acme")["events"] == {"purchase": []}


def test_a_wrong_method_on_a_real_route_is_a_405_with_allow_and_an_unknown_one_a_json_501(quick):
    status, headers, body = _raw(quick, b"GET /api/ucd/acme/upsert HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, headers["allow"], body["error"]["code"]) == (405, "POST", "method_not_allowed")
    status, headers, body = _raw(
        quick, b"PUT /api/accounts/acme/integrations/3f9c0a1b2c3d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    assert (status, headers["allow"]) == (405, "GET, PATCH, DELETE")
    status, _, body = _raw(quick, b"BREW /api/ucd/acme/catalog HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body["error"]["code"]) == (501, "not_implemented")
    status, _, body = _raw(quick, b"GET /api/nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _, body = _raw(quick, b"this is not http\r\n\r\n")
    assert status == 400 and body["error"]["message"]
