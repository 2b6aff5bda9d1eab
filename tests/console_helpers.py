"""Helpers of the console tests: a plain HTTP browser (cookies, forms, CSRF tokens) for `serve`'s console,
a catalog whose names are hostile markup, and `serve` with alice signed in (the `host` and `alice`
fixtures, imported by the tests that use them) with the wizard's steps as functions."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html import unescape
from typing import Any

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from exporter.destinations.azure_blob import parse_connection_string
from exporter.local.serve import LocalHost
from exporter.members import MemberRepo
from tests.helpers import call

# Event names and parameter keys a customer may send: markup, quotes, an ampersand, a script.
HOSTILE_EVENT = '<script>alert("e")</script>'
HOSTILE_PARAM = "\"><img src=x onerror=alert('p')>"
HOSTILE_ATTRIBUTE = "a'&\"<b>"
DEV_ACCOUNT = "devstoreaccount1"  # Azurite's well-known account and key
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def sas_connection(azurite_connection: str, container: str, **permissions: bool) -> str:
    """A SAS connection string for one container of Azurite with the given permissions."""
    endpoint = parse_connection_string(azurite_connection).blob_endpoint
    permission = ContainerSasPermissions(**permissions)
    sas = generate_container_sas(
        DEV_ACCOUNT, container, account_key=DEV_KEY, permission=permission, expiry="2100-01-01"
    )
    return f"BlobEndpoint={endpoint};SharedAccessSignature={sas}"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    text: str
    url: str

    def csrf(self) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.text)
        assert found, "the page has no form with a CSRF token"
        return unescape(found[1])

    def alert(self) -> str:
        found = re.search(r'role="alert"><p>(.*?)</p>', self.text, re.S)
        return unescape(found[1]) if found else ""

    def notice(self) -> str:
        found = re.search(r'role="status"><p>(.*?)</p>', self.text, re.S)
        return unescape(found[1]) if found else ""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Browser:
    """A cookie-keeping client that does not follow redirects unless asked (so tests see each 303)."""

    base: str  # http://127.0.0.1:PORT
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def request(
        self, method: str, path: str, form: dict[str, Any] | None = None, follow: bool = True, **headers: str
    ) -> Answer:
        data = urllib.parse.urlencode(form or {}, doseq=True).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(req, timeout=60) as resp:
                answer = Answer(
                    resp.status,
                    dict(resp.headers),
                    resp.headers.get_all("Set-Cookie") or [],
                    resp.read().decode(),
                    path,
                )
        except urllib.error.HTTPError as error:
            answer = Answer(
                error.code, dict(error.headers), error.headers.get_all("Set-Cookie") or [], error.read().decode(), path
            )
        if follow and answer.status in (302, 303):
            location = answer.headers["Location"]
            return self.request("GET", location if location.startswith("/") else urllib.parse.urlsplit(location).path)
        return answer

    def get(self, path: str, follow: bool = True) -> Answer:
        return self.request("GET", path, follow=follow)

    def post(self, path: str, form: dict[str, Any], follow: bool = True) -> Answer:
        return self.request("POST", path, form, follow=follow)

    def submit(self, page: Answer, path: str, form: dict[str, Any], follow: bool = True) -> Answer:
        """POST a form of `page` with its CSRF token."""
        return self.post(path, {"csrf_token": page.csrf(), **form}, follow=follow)

    def sign_in(self, user: str) -> Answer:
        page = self.get("/console/sign-in")
        return self.submit(page, "/console/sign-in", {"user": user})


def wizard_path(answer: Answer) -> str:
    """The wizard's URL of a page of it (/console/accounts/A/wizard/DRAFT/step)."""
    found = re.search(r'action="(/console/accounts/[^"]+/wizard/[0-9a-f]{32}/[a-z]+)"', answer.text)
    assert found, "not a wizard page"
    return unescape(found[1])


# ------------------------------------------------------------------ serve with alice, and the wizard's steps


@pytest.fixture
def host(ctx):
    MemberRepo(ctx.storage, ctx.clock).add("acme", "alice")
    call(
        ctx,
        "ucd_upsert",
        {
            "users": [
                {
                    "user_id": "u1",
                    "attributes": {"email": "a@x.org", HOSTILE_ATTRIBUTE: "v"},
                    "events": [
                        {"event_name": "purchase", "timestamp": "2026-11-28T09:00:00Z", "event_params": {"price": 3}},
                        {
                            "event_name": "signup",
                            "timestamp": "2026-11-28T09:00:00Z",
                            "event_params": {"attr_email": "x"},
                        },
                        {
                            "event_name": HOSTILE_EVENT,
                            "timestamp": "2026-11-28T09:00:00Z",
                            "event_params": {HOSTILE_PARAM: 1, "email": "x"},
                        },
                    ],
                }
            ]
        },
        account="acme",
    )
    local = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, dev_sign_in=True).start()
    yield local
    local.stop()


@pytest.fixture
def alice(host) -> Browser:
    browser = Browser(host.console_url.removesuffix("/console"))
    browser.sign_in("alice")
    return browser


def start(browser: Browser, kind: str = "azure_blob"):
    page = browser.get("/console/accounts/acme/new")
    return browser.submit(page, "/console/accounts/acme/new", {"type": kind})


def authenticate(browser, page, connection: str, container: str, action: str = "save", prefix: str = "insider/"):
    form = {"connection_string": connection, "container": container, "prefix": prefix, "action": action}
    return browser.submit(page, wizard_path(page), form)


def create(browser, azurite_connection, container, name="warehouse feed", status="active", frequency="1"):
    page = authenticate(browser, start(browser), azurite_connection, container)
    page = browser.submit(page, wizard_path(page), {"event": ["purchase"], "param": ['["purchase", "price"]']})
    return browser.submit(page, wizard_path(page), {"name": name, "frequency_hours": frequency, "status": status})
