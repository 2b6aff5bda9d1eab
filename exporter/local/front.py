"""`serve`'s HTTP front: waitress, with an overall per-request deadline and refusals in JSON.

waitress reads every connection on one loop thread and hands a request to a worker thread only once
it has arrived whole, so a slow client holds no worker. Its own timeout is for inactivity only: a
client that sends one byte every few seconds would hold a connection forever. Here each request has a
deadline from its first byte: a request still arriving then is answered 408 and the connection
closed; an answer the client has not taken within the same time after it was ready is dropped. (The
function's own run is bounded by the function, as in Azure, not by this.)

Malformed framing, a body over the limit (exporter/validation.py) and headers over theirs are
answered in JSON naming the header or the body, like every refusal of the app. A client that hangs
up is logged at most as a line, never as a traceback.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from typing import TYPE_CHECKING

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import (
    BadRequest,
    Error,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    ServerNotImplemented,
)

from ..validation import MAX_BODY_BYTES

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

DEADLINE_SECONDS = 30.0
BACKLOG = 1024  # connections the kernel holds while the loop accepts (a burst of hundreds is answered, not reset)
THREADS = 8
CONNECTION_LIMIT = 500
MAX_HEADER_BYTES = 64 * 1024
LINGER_SECONDS = 2.0
TWO_FRAMINGS = "Content-Length and Transfer-Encoding together"
ERROR_CODES = {
    400: "invalid_input",
    408: "request_timeout",
    413: "payload_too_large",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


class Refusal(Error):
    """A request refused before it reaches a function: its status, and a JSON error naming the header or the body."""

    def __init__(self, code: int, field: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = _REASONS.get(code, "Error")
        self.field = field

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        error = {"code": ERROR_CODES[self.code], "message": f"{self.field}: {self.body}", "field": self.field}
        return (
            f"{self.code} {self.reason}",
            [("Content-Type", "application/json")],
            json.dumps({"error": error}).encode(),
        )


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}


def as_refusal(error: Error, chunked: bool) -> Refusal:
    """waitress's own refusals (plain text) in the app's words."""
    if isinstance(error, Refusal):
        return error
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return Refusal(431, "headers", f"are over the limit of {MAX_HEADER_BYTES} bytes")
    if isinstance(error, RequestEntityTooLarge):
        field = "body" if chunked else "Content-Length"
        return Refusal(413, field, f"is over the limit of {MAX_BODY_BYTES} bytes, split the request")
    if isinstance(error, ServerNotImplemented):
        return Refusal(501, "Transfer-Encoding", "is not supported; send the body with Content-Length or chunked")
    text = str(error.body)
    if isinstance(error, BadRequest) and TWO_FRAMINGS in text:
        return Refusal(400, "Content-Length", "must not be sent together with Transfer-Encoding")
    if isinstance(error, BadRequest) and "Content-Length" in text:
        return Refusal(400, "Content-Length", "must be one whole number of bytes")
    if isinstance(error, BadRequest) and "chunk" in text.lower():
        return Refusal(400, "body", f"is not valid chunked encoding ({text.lower()})")
    if isinstance(error, BadRequest):
        return Refusal(400, "request", f"is not valid HTTP ({text})")
    return Refusal(500, "request", "the server failed; see the logs")


class DeadlineParser(HTTPRequestParser):
    """One request as it arrives: when its first byte came, and the refusals waitress does not make itself."""

    completed: bool  # declared for the type checker: waitress is untyped

    def __init__(self, adj: Adjustments):
        super().__init__(adj)
        self.started = time.monotonic()

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            # Two framings of one body: refused, as RFC 9112 allows, rather than one of them believed.
            raise ParsingError(TWO_FRAMINGS)

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        receiver = self.body_rcv
        if (
            not self.completed
            and self.chunked
            and receiver is not None
            and self.body_bytes_received + getattr(receiver, "chunk_remainder", 0) > MAX_BODY_BYTES
        ):  # a chunk announced over the limit is refused now, not after it has been read
            self.error = RequestEntityTooLarge("chunk")
            self.completed = True
        if self.error is not None:
            self.error = as_refusal(self.error, self.chunked)
        return consumed


class JsonErrorTask(ErrorTask):
    def execute(self) -> None:
        self.request.error = as_refusal(self.request.error, getattr(self.request, "chunked", False))
        super().execute()


class DeadlineChannel(HTTPChannel):
    """A connection: its requests' deadlines, and a lingering close.

    When the server ends a connection whose client is still sending (a refused body, headers over the
    limit), closing at once would make the kernel answer the unread bytes with a reset that can destroy
    the answer before the client reads it. So the channel stops writing (FIN) and reads and discards
    what still comes for up to LINGER_SECONDS, then closes.
    """

    parser_class = DeadlineParser
    error_task_class = JsonErrorTask
    request: HTTPRequestParser | None  # declared for the type checker: waitress is untyped
    will_close: bool
    answered_at: float | None = None  # when the last answer was ready to send (monotonic)
    lingering_since: float | None = None

    def handle_close(self) -> None:
        if self.lingering_since is None and self.will_close and self.connected and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                return super().handle_close()
            self.lingering_since = time.monotonic()
            return None
        return super().handle_close()

    def readable(self) -> bool:
        return True if self.lingering_since is not None else super().readable()

    def writable(self) -> bool:
        return False if self.lingering_since is not None else super().writable()

    def handle_read(self) -> None:
        if self.lingering_since is None:
            return super().handle_read()
        try:
            data = self.socket.recv(65536)
        except OSError:
            data = b""
        if not data:
            super().handle_close()
        return None

    def service(self) -> None:
        super().service()
        self.answered_at = time.monotonic()

    def enforce(self, deadline: float, now: float) -> None:
        """On the loop thread: a request still arriving past its deadline is answered 408; an answer not taken, dropped."""
        if self.lingering_since is not None:
            if now - self.lingering_since >= LINGER_SECONDS:
                super().handle_close()
            return
        with self.requests_lock:
            request = self.request
            if (
                isinstance(request, DeadlineParser)
                and not request.completed
                and not self.will_close
                and now - request.started >= deadline
            ):
                part = "body" if request.headers_finished else "request"
                request.error = Refusal(408, part, f"did not arrive within {deadline:g} s of its first byte")
                request.completed = True
                self.request = None
                self.requests.append(request)  # as waitress queues a request that has arrived
                if len(self.requests) == 1:
                    self.server.add_task(self)
        if (
            not self.requests
            and self.total_outbufs_len
            and self.answered_at is not None
            and now - self.answered_at >= deadline
        ):
            self.will_close = True


class FrontServer(TcpWSGIServer):
    """waitress's TCP server with the deadline checked every `tick` seconds, run until `stop`."""

    channel_class = DeadlineChannel

    def __init__(self, app: WSGIApplication, host: str, port: int, deadline: float = DEADLINE_SECONDS):
        self.deadline = deadline
        self.tick = min(1.0, deadline / 10)
        self._next_check = 0.0
        self._stopped = threading.Event()
        self._closing = threading.Lock()
        adj = Adjustments(
            host=host,
            port=port,
            threads=THREADS,
            backlog=BACKLOG,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=max(1, math.ceil(deadline)),  # an idle keep-alive connection
            cleanup_interval=1,
            max_request_body_size=MAX_BODY_BYTES + 1,  # waitress refuses a body of this size or more
            max_request_header_size=MAX_HEADER_BYTES,
            log_socket_errors=False,  # a client that hangs up is no error of ours
            expose_tracebacks=False,
            ident="exporter-serve",
        )
        super().__init__(app, adj=adj)

    @property
    def address(self) -> tuple[str, int]:
        return self.effective_host, int(self.effective_port)

    def readable(self) -> bool:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.tick
            for channel in list(self.active_channels.values()):
                if isinstance(channel, DeadlineChannel):
                    channel.enforce(self.deadline, now)
        return super().readable()

    def run(self) -> None:
        while not self._stopped.is_set():
            wasyncore.loop(timeout=self.tick, map=self._map, use_poll=True, count=1)
        with self._closing:
            wasyncore.close_all(self._map)
        self.task_dispatcher.shutdown()

    def stop(self) -> None:
        # The trigger wakes the loop's poll at once (else a stop waits out the tick). Under the lock, so the
        # loop cannot close the trigger's pipe between the check and the write (its fd number may be reused).
        with self._closing:
            self._stopped.set()
            if not self.trigger._closed:
                self.pull_trigger()
