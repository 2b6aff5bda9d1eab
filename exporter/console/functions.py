"""The console behind the Functions host: a func.HttpRequest in, a func.HttpResponse out.

In Azure the user comes only from App Service Authentication (the development sign-in is `serve`'s).
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import azure.functions as func

from .app import Console
from .web import Request

_console: Console | None = None
_lock = threading.Lock()


def console() -> Console:
    """One console per worker process, on the triggers' context."""
    global _console
    from .. import triggers

    with _lock:
        ctx = triggers.context()
        if _console is None or _console.ctx is not ctx:
            _console = Console(ctx, development=False)
        return _console


def handle(req: func.HttpRequest) -> func.HttpResponse:
    parts = urlsplit(req.url)
    headers = dict(req.headers)
    forwarded = next((v for k, v in headers.items() if k.lower() == "x-forwarded-proto"), "")
    request = Request(
        method=req.method.upper(),
        path=parts.path or "/console",
        query=parse_qs(parts.query),
        headers=headers,
        body=req.get_body() or b"",
        https=parts.scheme == "https" or forwarded.lower() == "https",
    )
    answer = console().handle(request)
    response = func.HttpResponse(answer.body, status_code=answer.status)
    for name, value in answer.all_headers():
        response.headers.add(name, value)  # Set-Cookie may repeat
    return response
