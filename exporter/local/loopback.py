"""Small JSON endpoints on 127.0.0.1 for the local stand-ins of cloud identity services (never deployed)."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and logs nothing (the tests' output stays the app's)."""

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


def serve(
    handler: type[BaseHTTPRequestHandler], name: str, tls: tuple[Path, Path] | None = None
) -> ThreadingHTTPServer:
    """Serve `handler` on a free loopback port in a daemon thread; over https with `tls` = (cert, key)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
