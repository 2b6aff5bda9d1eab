"""The console's HTTP plumbing: requests and responses independent of the host, signed session cookies,
CSRF tokens, security headers and the templates.

Both hosts adapt to these: the Functions host (exporter/console/functions.py) and `serve`
(exporter/local/serve.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..errors import ConfigurationError

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
SESSION_COOKIE = "console_session"
SESSION_SECONDS = 8 * 3600
MAX_FORM_BYTES = 1024 * 1024
# No inline script or style anywhere: every script and stylesheet is a file served from /console/static.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",  # the favicon: every page names it, so no browser asks for a missing /favicon.ico
}

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),  # every customer string is text
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class Request:
    """One console request as both hosts see it."""

    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    https: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def cookie(self, name: str) -> str | None:
        raw = self.header("Cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel else None

    def form(self) -> dict[str, list[str]]:
        """A url-encoded form body (the only kind the console's forms send)."""
        if len(self.body) > MAX_FORM_BYTES:
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def arg(self, name: str) -> str:
        return (self.query.get(name) or [""])[0]


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[str] = field(default_factory=list)  # Set-Cookie values

    def all_headers(self) -> list[tuple[str, str]]:
        return [*self.headers.items(), *(("Set-Cookie", c) for c in self.cookies)]


def html(status: int, template: str, **context: object) -> Response:
    body = templates.get_template(template).render(**context).encode()
    return Response(status, body, {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS})


def redirect(location: str) -> Response:
    return Response(303, b"", {"Location": location, **SECURITY_HEADERS})


def static(name: str) -> Response | None:
    """A file of exporter/console/static (no subfolders, known types only)."""
    path = STATIC / name
    kind = STATIC_TYPES.get(path.suffix)
    if kind is None or "/" in name or "\\" in name or not path.is_file():
        return None
    headers = {"Content-Type": kind, **SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(200, path.read_bytes(), headers)


# ------------------------------------------------------------------ sessions and CSRF


@dataclass(frozen=True)
class Session:
    """What the signed cookie holds: a random id (CSRF tokens derive from it) and, for the development
    sign-in only, the user name. In Azure the user comes from the principal headers on every request."""

    sid: str
    user: str = ""
    issued: int = 0


class Signer:
    """HMAC-SHA256 with a key derived from EXPORT_SECRET_KEY (never the Fernet key itself)."""

    def __init__(self, secret_key: str):
        self._secret_key = secret_key

    @property
    def _key(self) -> bytes:
        """Checked on first use, like the Fernet key: without it the console answers which setting to fix."""
        if not self._secret_key:
            raise ConfigurationError(
                "is not set (the console signs its sessions with a key derived from it)", field="EXPORT_SECRET_KEY"
            )
        return hmac.new(self._secret_key.encode(), b"console-session-v1", hashlib.sha256).digest()

    def sign(self, data: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, data, hashlib.sha256).digest()).decode().rstrip("=")

    def dump(self, session: Session) -> str:
        payload = base64.urlsafe_b64encode(
            json.dumps({"s": session.sid, "u": session.user, "t": session.issued}).encode()
        ).decode()
        return f"{payload}.{self.sign(payload.encode())}"

    def load(self, value: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value; None if forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature, self.sign(payload.encode())):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(str(data["s"]), str(data["u"]), int(data["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        if (now if now is not None else time.time()) - session.issued > SESSION_SECONDS:
            return None
        return session

    def csrf_token(self, session: Session, user: str) -> str:
        """Bound to the session and the user: a token from another session or user is refused."""
        return self.sign(f"csrf|{session.sid}|{user}".encode())

    def csrf_ok(self, session: Session, user: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given, self.csrf_token(session, user))


def new_session(user: str = "") -> Session:
    return Session(secrets.token_urlsafe(18), user, int(time.time()))


def session_cookie(signer: Signer, session: Session, https: bool) -> str:
    """HttpOnly, SameSite=Strict, Secure over https; scoped to the console."""
    secure = "; Secure" if https else ""
    value = signer.dump(session)
    return f"{SESSION_COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}"


def expired_cookie(https: bool) -> str:
    secure = "; Secure" if https else ""
    return f"{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"


def account_url(account: str, *parts: str) -> str:
    """/console/accounts/{account}/..., each part percent-encoded."""
    return "/".join(["/console/accounts", quote(account, safe=""), *(quote(p, safe="") for p in parts)])
