"""`python -m exporter serve`: the local stand-in for the Functions host.

The HTTP routes of exporter/routes.py (those function_app.py registers) on localhost, the console
at /console, the every-minute timer and a queue listener with dequeue counts and a poison queue.
Real clock; storage from AzureWebJobsStorage.

The console's development sign-in (a user name, no password) exists only when `serve` is started
with `--dev-sign-in` or EXPORT_CONSOLE_DEV_SIGN_IN=true; the function app never offers it, and
infra/ never sets that setting. Without it, `serve`'s console answers that sign-in is not set up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

from .. import api, routes
from ..console.app import Console
from ..console.web import Request as ConsoleRequest
from ..context import Context
from ..jobs import schedule
from ..validation import MAX_BODY_BYTES
from .host import drain

log = logging.getLogger(__name__)


# A body shorter than its Content-Length (or a client that stops sending) is a 400 after this long, never a hung thread.
BODY_TIMEOUT_SECONDS = 10.0
MAX_LINE = 8192  # one chunk-size or trailer line of a chunked body
# Every standard method is routed (a wrong one on a real route is a 405 naming the allowed ones); others are a 501.
STANDARD_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
ERROR_CODES = {
    400: "invalid_input",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    505: "http_version_not_supported",
}


class Refused(Exception):
    """A request refused before it reaches an operation: its status, and the JSON error naming the header or the body."""

    def __init__(self, status: int, message: str, field: str):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"code": ERROR_CODES[status], "message": f"{field}: {message}", "field": field}}


DEV_SIGN_IN_SETTING = "EXPORT_CONSOLE_DEV_SIGN_IN"


def dev_sign_in_from_env() -> bool:
    """The explicit local switch for the development sign-in (never set in Azure)."""
    return os.environ.get(DEV_SIGN_IN_SETTING, "").strip().lower() == "true"


def make_handler(ctx: Context, body_timeout: float = BODY_TIMEOUT_SECONDS, console: Console | None = None):
    site = console or Console(ctx, development=False)

    class Handler(BaseHTTPRequestHandler):
        timeout = body_timeout  # applied to the socket by StreamRequestHandler.setup

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/console" or parts.path.startswith("/console/"):
                return self._console(parts.path, parts.query)
            found = routes.match(self.command, parts.path)
            if found is None:
                return self._no_route(parts.path)
            operation, params = found
            try:
                body = self._body(required=routes.takes_body(operation))
            except Refused as refused:
                self.close_connection = True  # what is left of the body cannot be told from a next request
                return self._send(refused.status, refused.body)
            request = api.ApiRequest(
                params=params, body=body, query=dict(parse_qsl(parts.query)), headers=dict(self.headers.items())
            )
            answer = api.handle(ctx, operation.name, request)
            self._send(answer.status, answer.body)

        def _console(self, path: str, query: str) -> None:
            try:
                body = self._body(required=False)
            except Refused as refused:
                self.close_connection = True
                return self._send(refused.status, refused.body)
            request = ConsoleRequest(
                method=self.command,
                path=path,
                query=parse_qs(query),
                headers=dict(self.headers.items()),
                body=body,
                https=False,  # serve speaks plain HTTP on this machine
            )
            answer = site.handle(request)
            self.send_response(answer.status)
            for name, value in answer.all_headers():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)

        def _no_route(self, path: str) -> None:
            allowed = routes.allowed_methods(path)
            self.close_connection = True  # the request's body, if any, was not read
            if not allowed:
                return self._send(404, {"error": {"code": "not_found", "message": f"no route {self.command} {path}"}})
            message = f"{self.command} is not allowed here; use {', '.join(allowed)}"
            self._send(
                405, {"error": {"code": "method_not_allowed", "message": message}}, {"Allow": ", ".join(allowed)}
            )

        def _body(self, required: bool) -> bytes:
            """The request body, by Content-Length or chunked; refused when malformed, too large or cut short."""
            lengths = self.headers.get_all("Content-Length") or []
            encoding = self.headers.get("Transfer-Encoding")
            if encoding is not None:
                if lengths:  # two framings of one body: refused, as RFC 9112 allows, rather than guessed at
                    raise Refused(400, "must not be sent together with Transfer-Encoding", "Content-Length")
                if encoding.strip().lower() != "chunked":
                    raise Refused(
                        501,
                        f"{encoding!r} is not supported; send the body with Content-Length or chunked",
                        "Transfer-Encoding",
                    )
                return self._chunked()
            if not lengths:
                if required:
                    raise Refused(411, "is required: this operation takes a JSON body", "Content-Length")
                return b""
            if len(set(lengths)) > 1 or not re.fullmatch(r"[0-9]+", lengths[0].strip()):
                raise Refused(400, "must be one whole number of bytes", "Content-Length")
            length = int(lengths[0])
            if length > MAX_BODY_BYTES:
                raise Refused(
                    413, f"is {length} bytes; the limit is {MAX_BODY_BYTES} bytes, split the request", "Content-Length"
                )
            return self._exactly(length)

        def _exactly(self, length: int) -> bytes:
            try:
                data = self.rfile.read(length)
            except TimeoutError:
                data = b""
            if len(data) < length:
                raise Refused(400, f"announced more bytes than arrived within {body_timeout:g} s", "body")
            return data

        def _chunked(self) -> bytes:
            body = bytearray()
            while True:
                size = self._chunk_size()
                if size == 0:
                    break
                if len(body) + size > MAX_BODY_BYTES:
                    raise Refused(413, f"is over the limit of {MAX_BODY_BYTES} bytes, split the request", "body")
                body += self._exactly(size)
                if self._line() not in (b"\r\n", b"\n"):
                    raise Refused(400, "is not valid chunked encoding (a chunk is longer than its size)", "body")
            while self._line() not in (b"\r\n", b"\n"):
                pass  # trailer fields: nothing here reads them
            return bytes(body)

        def _chunk_size(self) -> int:
            size = self._line().split(b";", 1)[0].strip()  # chunk extensions are ignored, as RFC 9112 allows
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size):
                raise Refused(400, "is not valid chunked encoding (a chunk size is not a hexadecimal number)", "body")
            return int(size, 16)

        def _line(self) -> bytes:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except TimeoutError:
                line = b""
            if not line.endswith(b"\n"):
                raise Refused(400, f"ended, or stopped for {body_timeout:g} s, inside its chunked encoding", "body")
            return line

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The standard library's own refusals (request line, headers, unknown methods), in JSON like every answer."""
            self.close_connection = True
            if (
                self.request_version == "HTTP/0.9"
            ):  # an unparsable request line: answer with a status line and headers anyway
                self.request_version = "HTTP/1.0"
            reason = message or self.responses.get(code, ("refused",))[0]
            self._send(code, {"error": {"code": ERROR_CODES.get(code, "invalid_request"), "message": reason}})

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, fmt: str, *args) -> None:
            log.info("http %s", fmt % args)

    for method in STANDARD_METHODS:
        setattr(Handler, f"do_{method}", Handler._serve)
    return Handler


def _every(seconds: float, stop: threading.Event, work, name: str) -> threading.Thread:
    def loop() -> None:
        while not stop.is_set():
            try:
                work()
            except Exception as error:  # noqa: BLE001 - a failed run is not retried, like the host's timer
                log.error("%s failed: %s", name, type(error).__name__)
            stop.wait(seconds)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


class LocalHost:
    """The HTTP server, the timer and the queue listener, started and stopped together."""

    def __init__(
        self,
        ctx: Context,
        host: str = "127.0.0.1",
        port: int = 7071,
        timer_seconds: float = 60.0,
        queue_poll_seconds: float = 1.0,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
        dev_sign_in: bool = False,
    ):
        self.ctx = ctx
        self.console = Console(ctx, development=dev_sign_in)
        # One thread per connection: a slow or stalled client never holds up the others.
        self.server = ThreadingHTTPServer((host, port), make_handler(ctx, body_timeout, self.console))
        self.url = f"http://{host}:{self.server.server_port}/api/"
        self.console_url = f"http://{host}:{self.server.server_port}/console"
        self._stop = threading.Event()
        self._timer_seconds = timer_seconds
        self._queue_poll_seconds = queue_poll_seconds

    def start(self) -> LocalHost:
        _every(self._timer_seconds, self._stop, lambda: schedule(self.ctx), "timer")
        _every(self._queue_poll_seconds, self._stop, lambda: drain(self.ctx, retry_delay=30), "queue")
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


def serve(host: str, port: int, timer_seconds: float = 60.0, dev_sign_in: bool = False) -> int:
    """Run until interrupted."""
    dev_sign_in = dev_sign_in or dev_sign_in_from_env()
    local = LocalHost(Context.create(), host, port, timer_seconds, dev_sign_in=dev_sign_in).start()
    log.info("serving", extra={"url": local.url})
    print(
        json.dumps(
            {
                "serving": local.url,
                "console": local.console_url,
                "dev_sign_in": dev_sign_in,
                "queue": local.ctx.settings.queue_name,
            }
        ),
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0
