"""A fault-injecting HTTP proxy for local storage servers (tests and soaks; never deployed).

It sits between a client and a real server (Azurite, an S3 or GCS emulator), forwards every request,
and injects faults where a rule says so or, in random mode, on a share of the calls:

- `reset_before`: the connection is closed before the request reaches the server;
- `reset_after`: the server applies the request, then the answer is lost (the connection is reset);
- `500`, `503`, `429`: an error answer without reaching the server (`Retry-After` on 503 and 429);
- `slow`: the request is forwarded after a delay;
- `401`, `403`, `404`: a refusal without reaching the server (for servers that cannot refuse, such
  as a GCS emulator that ignores credentials);
- `respond`: the rule's own canned `answer` (status, headers, body), e.g. an S3 XML error.
- `timeout`: the storage service's own timeout: after a wait, `500 OperationTimedOut`; the request
  was applied or not (an even chance), as the service documents for a timed-out operation
  (`timeout_applied`: always applied, for rules in tests);
- `bad_signature`: forwarded with its SharedKey signature spoiled, so the server itself refuses it
  (403), as it does once the customer has rotated the key we hold.

So no production code branches for a fault: the client's real retry and error paths run.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("reset_before", "reset_after", "500", "503", "429", "slow")
# The random-mode default stays KINDS; these are for rules or an explicit `randomly(rate, ALL_KINDS)`.
ALL_KINDS = KINDS + ("timeout",)
RULE_ONLY_KINDS = ("bad_signature", "timeout_applied")
REFUSALS = ("401", "403", "404")  # for rules: refusals a server cannot produce itself
ERROR_CODES = {
    500: "InternalError",
    503: "ServerBusy",
    429: "TooManyRequests",
    401: "NoAuthenticationInformation",
    403: "AuthorizationPermissionMismatch",
    404: "ResourceNotFound",
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Rule:
    """Inject `kind` into the next `times` requests whose method and path match."""

    kind: str
    method: str | None = None  # None: any method
    path: str = ""  # a regular expression searched in the path and query
    times: int = 1
    when: Callable[[str, str, dict[str, str]], bool] | None = None  # (method, path, headers) -> match?
    answer: tuple[int, dict[str, str], bytes] | None = None  # for kind "respond": status, headers, body

    def matches(self, method: str, path: str, headers: dict[str, str]) -> bool:
        if self.times <= 0 or (self.method and self.method != method):
            return False
        if self.path and not re.search(self.path, path):
            return False
        return self.when is None or self.when(method, path, headers)


STOP_POLL_SECONDS = 0.05


class FaultProxy:
    """A reverse proxy on a free loopback port in front of `upstream` (http://host:port)."""

    def __init__(self, upstream: str, *, seed: int = 0, slow_seconds: float = 0.2, timeout_seconds: float = 0.5):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.rate = 0.0  # share of requests that get a random fault
        self.random_kinds: tuple[str, ...] = KINDS
        self.slow_seconds = slow_seconds
        self.timeout_seconds = timeout_seconds
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.in_flight = 0  # requests received and not yet answered (or reset)
        self._idle = threading.Condition(threading.Lock())
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        # `stop` waits for the serving loop to look at its stop flag, once every poll interval: 0.5 s by default,
        # half a second at the end of every test (and of the soak, per proxy) for nothing.
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": STOP_POLL_SECONDS},
            name="fault-proxy",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def wait_idle(self, timeout: float = 30) -> bool:
        """Wait until no request is in flight (e.g. a killed client's last requests have landed)."""
        with self._idle:
            return self._idle.wait_for(lambda: self.in_flight == 0, timeout)

    def _enter(self) -> None:
        with self._idle:
            self.in_flight += 1

    def _leave(self) -> None:
        with self._idle:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.notify_all()

    def _coin(self) -> bool:
        with self._lock:
            return self._random.random() < 0.5

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.rate = 0.0

    def randomly(self, rate: float, kinds: tuple[str, ...] = KINDS) -> None:
        """Inject a random fault of one of `kinds` into a share `rate` of the requests."""
        with self._lock:
            self.rate, self.random_kinds = rate, kinds

    def _decide(self, method: str, path: str, headers: dict[str, str]) -> str | tuple | None:
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if rule.matches(method, path, headers):
                    rule.times -= 1
                    self.injected[rule.kind] += 1
                    return rule.answer if rule.kind == "respond" else rule.kind
            if self.rate and self._random.random() < self.rate:
                kind = self._random.choice(self.random_kinds)
                self.injected[kind] += 1
                return kind
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without TCP_NODELAY the client's delayed
                # ACK holds each answer back by tens of milliseconds.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reset(self) -> None:
                # SO_LINGER 0: the close sends a TCP reset, as a dropped connection does.
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                self.close_connection = True
                try:
                    self.connection.close()
                except OSError:
                    pass

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response_only(status)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str | None = None) -> None:
                code = code or ERROR_CODES[status]
                body = f'{{"error":{{"code":"{code}","message":"injected by the fault proxy"}}}}'.encode()
                headers = [("Content-Type", "application/json"), ("x-ms-error-code", code)]
                if status in (429, 503):
                    headers.append(("Retry-After", "0"))
                self._answer(status, headers, body)

            def _forward(self, body: bytes, spoil: bool = False) -> tuple[int, list[tuple[str, str]], bytes]:
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    headers["Content-Length"] = str(len(body))
                    if spoil:
                        headers = _spoiled(headers)
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    return response.status, response.getheaders(), data
                finally:
                    upstream.close()

            def _serve(self) -> None:
                proxy._enter()
                try:
                    self._serve_one()
                finally:
                    proxy._leave()

            def _serve_one(self) -> None:
                body = self._body()
                kind = proxy._decide(self.command, self.path, dict(self.headers.items()))
                if isinstance(kind, tuple):
                    status, headers, data = kind
                    return self._answer(status, list(headers.items()), data)
                if kind == "reset_before":
                    return self._reset()
                if kind in ("500", "503", "429", *REFUSALS):
                    return self._error(int(kind))
                if kind == "slow":
                    time.sleep(proxy.slow_seconds)
                if kind in ("timeout", "timeout_applied"):
                    time.sleep(proxy.timeout_seconds)
                    if kind == "timeout_applied" or proxy._coin():
                        try:
                            self._forward(body)
                        except OSError:
                            pass
                    return self._error(500, "OperationTimedOut")
                try:
                    status, headers, data = self._forward(body, spoil=kind == "bad_signature")
                except OSError:
                    return self._reset()
                if kind == "reset_after":
                    return self._reset()
                self._answer(status, headers, data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_MERGE = do_OPTIONS = _serve

            def log_message(self, fmt: str, *args: object) -> None:
                pass

        return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that hangs up (a killed process, a reset connection) is routine here, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def _spoiled(headers: dict[str, str]) -> dict[str, str]:
    """The same request signed with a key the account no longer has (SharedKey: signature changed)."""
    spoiled = dict(headers)
    for key, value in headers.items():
        if key.lower() == "authorization" and ":" in value:
            scheme_account, _signature = value.rsplit(":", 1)
            spoiled[key] = scheme_account + ":" + "A" * 43 + "="
    return spoiled
