"""The console behind the Functions host: a func.HttpRequest in, a func.HttpResponse out.

In Azure the user comes only from App Service Authentication. The development sign-in is `serve`'s:
it runs a request inside `development_sign_in()`, which nothing deployed calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import parse_qs, urlsplit

import azure.functions as func

from .app import Console
from .web import Request

_consoles: dict[bool, Console] = {}  # by whether it offers the development sign-in
_lock = threading.Lock()
_development: ContextVar[bool] = ContextVar("console_development_sign_in", default=False)


def console() -> Console:
    """One console per worker process, on the triggers' context."""
    from .. import triggers

    development = _development.get()
    with _lock:
        ctx = triggers.context()
        site = _consoles.get(development)
        if site is None or site.ctx is not ctx:
            site = _consoles[development] = Console(ctx, development=development)
        return site


@contextmanager
def development_sign_in(enabled: bool) -> Iterator[None]:
    """The console answers the requests handled inside with (or without) the development sign-in."""
    token = _development.set(enabled)
    try:
        yield
    finally:
        _development.reset(token)


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
