"""The function app's HTTP functions as the Functions host sees them, and a request handed to one of them.

`serve` has no routes of its own: it indexes `function_app.app` (each function's HTTP trigger: route
template, methods, auth level, and the user function) and hands every request to the function whose
route matches, as a `func.HttpRequest`, the way the Azure host does. Whatever a function checks (the
members check of exporter/triggers.py, the console's sign-in) is checked here because the same
function runs.

Routing follows the host: host.json's routePrefix is empty, so a template is matched from the first
path segment; literals match case-insensitively, `{name}` one non-empty segment (percent-decoded),
`{*name}` the rest; a literal segment wins over a parameter, a parameter over a catch-all; a trailing
slash is ignored. A path that no route serves with the request's method is a 404, as in Azure (the
host answers 404, not 405, for a known route and another method).

Function keys: in Azure the host refuses a request to a FUNCTION-level function without a key. Locally,
like `func start`, there is no key unless EXPORT_LOCAL_FUNCTION_KEY is set; then a FUNCTION- or
ADMIN-level function needs it in `x-functions-key` or `?code=`, or the answer is a 401.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from azure.functions.decorators.function_app import Function

log = logging.getLogger(__name__)

KEY_SETTING = "EXPORT_LOCAL_FUNCTION_KEY"
KEY_HEADER = "x-functions-key"
LITERAL, PARAMETER, CATCH_ALL = 0, 1, 2  # a segment's kind, in the order the host prefers them


@dataclass(frozen=True)
class HttpFunction:
    """One registered function with an HTTP trigger."""

    name: str
    template: str
    methods: frozenset[str]
    auth_level: str  # "ANONYMOUS", "FUNCTION" or "ADMIN"
    arg_name: str  # the parameter the request is passed as
    user_function: Callable[..., func.HttpResponse]

    @property
    def segments(self) -> list[str]:
        return self.template.strip("/").split("/")

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(_kind(segment) for segment in self.segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The route parameters when the path's segments (percent-decoded) match the template; None otherwise."""
        values: dict[str, str] = {}
        for i, segment in enumerate(self.segments):
            kind = _kind(segment)
            if kind == CATCH_ALL:
                values[segment[2:-1]] = "/".join(parts[i:])
                return values
            if i >= len(parts) or not parts[i]:
                return None
            if kind == PARAMETER:
                values[segment[1:-1]] = parts[i]
            elif segment.lower() != parts[i].lower():
                return None
        return values if len(parts) == len(self.segments) else None


def _kind(segment: str) -> int:
    if segment.startswith("{*"):
        return CATCH_ALL
    return PARAMETER if segment.startswith("{") else LITERAL


def http_functions(indexed: Iterable[Function]) -> list[HttpFunction]:
    """The HTTP-triggered functions of an indexed function app, most specific route first."""
    found = []
    for fn in indexed:
        for binding in json.loads(fn.get_function_json())["bindings"]:
            if binding["type"] == "httpTrigger":
                found.append(
                    HttpFunction(
                        name=fn.get_function_name() or "",  # every indexed function is named
                        template=binding["route"],
                        methods=frozenset(m.upper() for m in binding["methods"]),
                        auth_level=str(binding["authLevel"]).upper(),
                        arg_name=binding["name"],
                        user_function=fn.get_user_function(),
                    )
                )
    return sorted(found, key=lambda f: f.precedence)


@functools.cache
def registered() -> tuple[Function, ...]:
    """function_app.app's functions, indexed once per process (a FunctionApp refuses to index twice)."""
    import function_app  # the repository root's function app, as the host loads it

    return tuple(function_app.app.get_functions())


def split_path(raw_path: str) -> list[str]:
    """The path's segments, percent-decoded one by one (an encoded '/' stays inside its segment)."""
    path = raw_path.lstrip("/")
    return [unquote(part) for part in path.removesuffix("/").split("/")]


class FunctionsApp:
    """A WSGI application that hands each request to the matching function (see the module's docstring).

    `scope()` wraps each call: `serve` runs the function on its own context and console settings there.
    """

    def __init__(
        self,
        functions: list[HttpFunction],
        base_url: str,
        scope: Callable[[], AbstractContextManager[object]],
        key: str | None = None,
    ):
        self.functions = functions
        self.base_url = base_url.rstrip("/")
        self.scope = scope
        self.key = key

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        target = urlsplit(environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/")
        body = environ["wsgi.input"].read()
        answer = self.answer(method, target.path or "/", target.query, _headers(environ), body)
        payload = answer.get_body()
        headers = [(k, v) for k, v in answer.headers.items() if k.lower() != "content-length"]
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", _content_type(answer)))
        headers.append(("Content-Length", str(len(payload))))
        start_response(f"{answer.status_code} {_phrase(answer.status_code)}", headers)
        return [] if method == "HEAD" else [payload]

    def answer(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> func.HttpResponse:
        """The function's answer to one request, or the host's own 404 or 401."""
        parts = split_path(path)
        found = next(
            ((fn, params) for fn in self.functions if method in fn.methods and (params := fn.match(parts)) is not None),
            None,
        )
        if found is None:
            return _json(404, "not_found", f"no function serves {method} {path}")
        fn, route_params = found
        params = dict(parse_qsl(query, keep_blank_values=True))
        if not self._key_ok(fn, headers, params):
            return _json(401, "unauthorized", f"{KEY_HEADER}: a function key is required", KEY_HEADER)
        request = func.HttpRequest(
            method,
            self.base_url + path + (f"?{query}" if query else ""),
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )
        try:
            with self.scope():
                return fn.user_function(**{fn.arg_name: request})
        except Exception:  # the host answers 500 and logs the function's exception
            log.exception("function %s failed", fn.name)
            return _json(500, "internal_error", "the function failed; see the logs")

    def _key_ok(self, fn: HttpFunction, headers: dict[str, str], params: dict[str, str]) -> bool:
        if self.key is None or fn.auth_level == "ANONYMOUS":
            return True
        given = next((v for k, v in headers.items() if k.lower() == KEY_HEADER), None) or params.get("code", "")
        return hmac.compare_digest(given.encode(), self.key.encode())


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The request's headers under their usual names (X-Ms-Client-Principal-Name); lookups ignore case."""
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            key = key[5:]
        elif key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            continue
        headers["-".join(part.capitalize() for part in key.split("_"))] = value
    return headers


def _content_type(answer: func.HttpResponse) -> str:
    """As the Python worker does: the mimetype, with the charset for text."""
    mimetype = answer.mimetype or "text/plain"
    return f"{mimetype}; charset={answer.charset}" if mimetype.startswith("text/") else mimetype


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _json(status: int, code: str, message: str, field: str | None = None) -> func.HttpResponse:
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return func.HttpResponse(json.dumps({"error": error}), status_code=status, mimetype="application/json")
