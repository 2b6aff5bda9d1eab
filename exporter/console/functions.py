"""The console behind the Functions host: a func.HttpRequest in, a func.HttpResponse out.

In Azure the user comes only from App Service Authentication; the development sign-in is offered only
to the requests `serve --dev-sign-in` hands over (exporter/triggers.py `LocalRequest`).
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import azure.functions as func

from .app import Console
from .web import Request

_consoles: dict[bool, Console] = {}  # by whether it offers the development sign-in
_lock = threading.Lock()


def console() -> Console:
    """One console per worker process, on the triggers' context."""
    from .. import triggers

    development = triggers.development_sign_in()
    with _lock:
        ctx = triggers.context()
        site = _consoles.get(development)
        if site is None or site.ctx is not ctx:
            site = _consoles[development] = Console(ctx, development=development)
        return site


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
