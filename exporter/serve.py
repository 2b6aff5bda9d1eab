"""`python -m exporter serve`: the local stand-in for the Functions host.

HTTP routes of function_app.py on localhost, the every-minute timer and a queue listener with
dequeue counts and a poison queue. Real clock; storage from AzureWebJobsStorage.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import api
from .context import Context
from .host import drain
from .jobs import schedule

log = logging.getLogger(__name__)


def make_handler(ctx: Context):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            found = api.match(self.command, parts.path)
            if found is None:
                return self._send(404, {"error": {"code": "not_found", "message": f"no route {self.command} {parts.path}"}})
            operation, params = found
            length = int(self.headers.get("Content-Length") or 0)
            request = api.ApiRequest(
                params=params, body=self.rfile.read(length) if length else b"",
                query=dict(parse_qsl(parts.query)), headers=dict(self.headers.items()),
            )
            answer = api.handle(ctx, operation, request)
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


def serve(host: str, port: int, timer_seconds: float = 60.0, ctx: Context | None = None) -> int:
    ctx = ctx or Context.create()
    server = ThreadingHTTPServer((host, port), make_handler(ctx))
    stop = threading.Event()
    _every(timer_seconds, stop, lambda: schedule(ctx), "timer")
    _every(1.0, stop, lambda: drain(ctx, retry_delay=30), "queue")
    log.info("serving", extra={"url": f"http://{host}:{port}/api/"})
    print(json.dumps({"serving": f"http://{host}:{port}/api/", "queue": ctx.settings.queue_name}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0
