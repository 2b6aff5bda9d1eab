"""Small JSON endpoints on 127.0.0.1 for the local stand-ins of cloud identity services (never deployed)."""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and logs nothing (the tests' output stays the app's)."""

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, list[str]]:
        """The request's body as a form: how OAuth token and exchange requests arrive."""
        length = int(self.headers.get("Content-Length") or 0)
        return parse_qs(self.rfile.read(length).decode())

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
    # A stop waits for the serving loop's next poll: 0.05 s, not the default 0.5 (tests stop many stand-ins).
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True).start()
    return server


@dataclass
class StandIn:
    """A stand-in served on a loopback port by `serve`: its address once started, and its stop."""

    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        scheme = "https" if isinstance(self._server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
