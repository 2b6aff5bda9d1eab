"""`python -m exporter serve`: the local stand-in for the Functions host.

The HTTP routes of exporter/routes.py (those function_app.py registers) on localhost, the
every-minute timer and a queue listener with dequeue counts and a poison queue. Real clock;
storage from AzureWebJobsStorage.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from .. import api, routes
from ..context import Context
from ..jobs import schedule
from .host import drain

log = logging.getLogger(__name__)


def make_handler(ctx: Context):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            found = routes.match(self.command, parts.path)
            if found is None:
                return self._send(404, {"error": {"code": "not_found", "message": f"no route {self.command} {parts.path}"}})
            operation, params = found
            length = int(self.headers.get("Content-Length") or 0)
            request = api.ApiRequest(
                params=params, body=self.rfile.read(length) if length else b"",
                query=dict(parse_qsl(parts.query)), headers=dict(self.headers.items()),
            )
            answer = api.handle(ctx, operation.name, request)
            self._send(answer.status, answer.body)

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, fmt: str, *args) -> None:
            log.info("http %s", fmt % args)

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

    def __init__(self, ctx: Context, host: str = "127.0.0.1", port: int = 7071, timer_seconds: float = 60.0,
                 queue_poll_seconds: float = 1.0):
        self.ctx = ctx
        self.server = ThreadingHTTPServer((host, port), make_handler(ctx))
        self.url = f"http://{host}:{self.server.server_port}/api/"
        self._stop = threading.Event()
        self._timer_seconds = timer_seconds
        self._queue_poll_seconds = queue_poll_seconds

    def start(self) -> "LocalHost":
        _every(self._timer_seconds, self._stop, lambda: schedule(self.ctx), "timer")
        _every(self._queue_poll_seconds, self._stop, lambda: drain(self.ctx, retry_delay=30), "queue")
        threading.Thread(target=self.server.serve_forever, name="http", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


def serve(host: str, port: int, timer_seconds: float = 60.0) -> int:
    """Run until interrupted."""
    local = LocalHost(Context.create(), host, port, timer_seconds).start()
    log.info("serving", extra={"url": local.url})
    print(json.dumps({"serving": local.url, "queue": local.ctx.settings.queue_name}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0
