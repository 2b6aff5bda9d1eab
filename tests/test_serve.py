"""`serve`, the local stand-in for the Functions host: the function app's functions over real HTTP on
loopback (waitress), the timer and the queue listener together; the deadline, bursts, hang-ups and
malformed requests at the HTTP front. The access checks, run against both paths, are in
tests/test_serve_access.py."""

import json
import logging
import select
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import pytest

from exporter.local import serve as serve_module
from exporter.local.functions import KEY_SETTING, http_functions, registered, split_path
from exporter.local.serve import LocalHost
from tests.helpers import T0, integration_body


def _request(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
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


# ------------------------------------------------------------------ routing, as the host routes


def test_serve_has_no_function_of_its_own_only_the_function_apps():
    http = [f for f in registered() if "httpTrigger" in f.get_function_json()]
    served = {f.name: f.user_function for f in http_functions(registered())}
    assert served == {f.get_function_name(): f.get_user_function() for f in http}
    assert set(served) >= {"members", "member", "integrations", "console_home", "console_pages"}


def test_routes_are_matched_as_the_host_matches_them():
    functions = http_functions(registered())

    def route(method, path):
        parts = split_path(path)
        for fn in functions:
            if method in fn.methods and (params := fn.match(parts)) is not None:
                return fn.name, params
        return None

    # A literal segment wins over a parameter: verify is its own function, not an integration id.
    assert route("POST", "/api/accounts/acme/integrations/verify") == ("integrations_verify", {"account": "acme"})
    assert route("GET", "/api/accounts/acme/integrations/verify") == (
        "integration",
        {"account": "acme", "id": "verify"},
    )
    assert route("GET", "/API/Accounts/acme/integrations/") == ("integrations", {"account": "acme"})
    assert route("PUT", "/api/accounts/acme/members/a%40b.org") == ("member", {"account": "acme", "user": "a@b.org"})
    assert route("DELETE", "/api/ucd/acme/users/a%2Fb") == ("ucd_user", {"account": "acme", "user_id": "a/b"})
    assert route("GET", "/console") == ("console_home", {})
    assert route("HEAD", "/console/accounts/acme/new") == ("console_pages", {"path": "accounts/acme/new"})
    assert route("GET", "/api/ucd//catalog") is None  # a parameter is never empty
    assert route("PUT", "/api/ucd/acme/catalog") is None  # another method: no function (the host's 404)


# ------------------------------------------------------------------ the HTTP front, with raw sockets

DEADLINE = 1.0
UPSERT = json.dumps(
    {"users": [{"user_id": "u", "events": [{"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z"}]}]}
).encode()


@pytest.fixture
def quick(ctx):
    """A host whose deadline is short, so a client that drips or stalls is answered within the test."""
    host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, deadline=DEADLINE).start()
    yield host
    host.stop()


def _connect(host: LocalHost) -> socket.socket:
    return socket.create_connection(host.address, timeout=30)


def _parse(data: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert headers["content-type"] == "application/json", (status_line, headers, body)
    return int(status_line.split()[1]), headers, json.loads(body)


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Read a whole answer (the request said Connection: close, or the server closes after it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return _parse(data)


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
        ("Connection: close\r\n", 400, "body"),  # no body at all: the function refuses it
        (f"Content-Length: {16 * 1024 * 1024 + 1}\r\n", 413, "Content-Length"),
        ("Transfer-Encoding: chunked\r\n\r\nFFFFFFF", 413, "body"),
        ("Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "body"),
        ("Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX\r\n", 400, "body"),
        ("X-Big: " + "x" * 70_000 + "\r\n", 431, "headers"),
    ],
)
def test_a_malformed_body_framing_is_a_json_4xx_naming_the_header_or_the_body(quick, ctx, headers, status, field):
    answer_status, _, body = _raw(quick, _post("ucd/acme/upsert", headers))
    assert (answer_status, body["error"]["field"]) == (status, field), body
    assert body["error"]["message"].startswith(f"{field}: ")
    assert ctx.ucd.catalog("acme")["events"] == {}, "nothing stored"


def test_a_drip_fed_request_ends_at_the_deadline_and_others_are_answered_meanwhile(quick, ctx):
    dripping = _connect(quick)
    request = _post("ucd/acme/upsert", f"Content-Length: {len(UPSERT)}\r\n", UPSERT)
    started = time.monotonic()
    sent = 0
    while sent < len(request) and time.monotonic() - started < DEADLINE + 5:
        try:
            dripping.sendall(request[sent : sent + 1])  # one byte at a time, never idle long enough for a timeout
        except OSError:
            break
        sent += 1
        if sent == 5:
            status, _, catalog = _raw(
                quick, b"GET /api/ucd/acme/catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert (status, catalog["events"]) == (200, {}), "another client is answered while one drips"
        if _readable(dripping, 0.05):
            break
    elapsed = time.monotonic() - started
    status, _, body = _answer(dripping)
    assert sent < len(request), "the deadline ended the request before it had all arrived"
    assert (status, body["error"]["code"], body["error"]["field"]) == (408, "request_timeout", "request"), body
    assert DEADLINE <= elapsed < DEADLINE + 1.5
    assert ctx.ucd.catalog("acme")["events"] == {}, "nothing stored"


def test_a_body_shorter_than_announced_is_answered_at_the_deadline(quick):
    stalled = _connect(quick)
    stalled.sendall(_post("ucd/acme/upsert", f"Content-Length: {len(UPSERT) + 10}\r\n", UPSERT))
    started = time.monotonic()
    status, _, body = _answer(stalled)
    assert (status, body["error"]["field"]) == (408, "body"), body
    assert DEADLINE <= time.monotonic() - started < DEADLINE + 1.5


def test_a_chunked_body_is_decoded(quick, ctx):
    chunks = (
        b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (UPSERT[:10], UPSERT[10:]))
        + b"0\r\nX-Trailer: t\r\n\r\n"
    )
    status, _, body = _raw(
        quick, _post("ucd/acme/upsert", "Transfer-Encoding: chunked\r\nConnection: close\r\n", chunks)
    )
    assert (status, body["stored_events"]) == (200, 1), body
    assert ctx.ucd.catalog("acme")["events"] == {"purchase": []}


def test_no_function_for_the_method_or_path_is_a_404_as_in_azure_and_garbage_a_json_400(quick):
    for request in (
        b"GET /api/ucd/acme/upsert HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"PUT /api/accounts/acme/integrations/3f9c0a1b2c3d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"BREW /api/ucd/acme/catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /api/nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ):
        status, _, body = _raw(quick, request)
        assert (status, body["error"]["code"]) == (404, "not_found"), request
    status, _, body = _raw(quick, b"this is not http\r\n\r\n")
    assert status == 400 and body["error"]["field"] == "request"


def test_head_answers_the_headers_of_get_without_the_body(quick):
    sock = _connect(quick)
    sock.sendall(b"HEAD /console/static/console.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/css" in head and body == b""
    assert int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]) > 0


def test_two_hundred_concurrent_requests_are_all_answered(quick):
    count = 200
    start = threading.Barrier(count)
    answers: list[int | str] = []

    def client() -> None:
        try:
            start.wait(timeout=30)
            with _connect(quick) as sock:
                sock.sendall(b"GET /api/ucd/acme/catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answers.append(_answer(sock)[0])
        except OSError as error:  # a reset or a refused connection
            answers.append(type(error).__name__)

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == [200] * count


def test_a_client_that_hangs_up_logs_no_traceback(quick, caplog):
    caplog.set_level(logging.DEBUG)
    for request in (
        b"GET /console/static/console.css HTTP/1.1\r\nHost: x\r\n\r\n",  # gone before its answer
        _post("ucd/acme/upsert", "Content-Length: 100\r\n", b"{"),  # gone inside its body
        b"GET /api/ucd/acme/cat",  # gone inside its request line
    ):
        sock = _connect(quick)
        sock.sendall(request)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, not a goodbye
        sock.close()
    waited = time.monotonic() + DEADLINE + 10  # the first's answer meets the reset; the others reach their deadline
    while quick.server.active_channels and time.monotonic() < waited:
        time.sleep(0.05)  # waiting on the server's own thread to close the three connections
    assert not quick.server.active_channels, quick.server.active_channels
    assert _raw(quick, b"GET /api/ucd/acme/catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
    logged = [(r.name, r.levelname, r.getMessage()[:200]) for r in caplog.records]
    assert [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()] == [], logged
    front = [r for r in caplog.records if r.name.startswith(("waitress", "exporter.local"))]
    assert [r for r in front if r.levelno >= logging.WARNING] == [], logged


# ------------------------------------------------------------------ function keys


def test_with_a_local_function_key_the_api_needs_it_and_the_console_does_not(ctx):
    host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, key="k-123").start()
    try:
        catalog = host.url + "ucd/acme/catalog"
        status, body = _request("GET", catalog)
        assert (status, body["error"]["field"]) == (401, "x-functions-key")
        assert _request("GET", catalog, headers={"x-functions-key": "wrong"})[0] == 401
        assert _request("GET", catalog, headers={"x-functions-key": "k-123"})[0] == 200
        assert _request("GET", catalog + "?code=k-123")[0] == 200
        sheet = urllib.request.urlopen(host.console_url + "/static/console.css", timeout=30)
        assert sheet.status == 200  # the console's functions are anonymous, as in Azure
    finally:
        host.stop()


def test_serve_refuses_to_listen_off_loopback_without_a_function_key(monkeypatch, capsys):
    monkeypatch.delenv(KEY_SETTING, raising=False)
    assert serve_module.serve("0.0.0.0", 0) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["field"] == KEY_SETTING


def _readable(sock: socket.socket, timeout: float) -> bool:
    """Whether the server has answered (poll, not select(): a worker of the suite may hold over 1,024 files)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))
