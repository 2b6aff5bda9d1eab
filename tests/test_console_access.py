"""Per-account access: the members table and CLI, the signed-in user from App Service Authentication's
headers, the development sign-in (serve only), and a non-member answered as for an account that does
not exist, in the console and in the API. Against `serve` on Azurite."""

from __future__ import annotations

import base64
import dataclasses
import json

import azure.functions as func
import pytest

from exporter import access, cli, triggers
from exporter.console.app import Console
from exporter.console.web import Request
from exporter.local.serve import LocalHost
from exporter.members import MemberRepo
from tests.app_functions import FUNCTIONS
from tests.console_helpers import Browser
from tests.helpers import call


def principal(name: str, claim: str = "preferred_username") -> str:
    body = {"auth_typ": "aad", "name_typ": claim, "claims": [{"typ": claim, "val": name}, {"typ": "oid", "val": "1"}]}
    return base64.b64encode(json.dumps(body).encode()).decode()


@pytest.fixture
def members(ctx) -> MemberRepo:
    return MemberRepo(ctx.storage, ctx.clock)


@pytest.fixture
def dev_host(ctx):
    host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600, dev_sign_in=True).start()
    yield host
    host.stop()


@pytest.fixture
def plain_host(ctx):
    host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600).start()
    yield host
    host.stop()


def base(host: LocalHost) -> str:
    return host.console_url.removesuffix("/console")


# ------------------------------------------------------------------ members


def test_members_add_list_remove_through_the_api_operations(ctx):
    assert call(ctx, "members_add", account="acme", user="Alice@Contoso.com").body == {
        "account": "acme",
        "user": "alice@contoso.com",
        "member": True,
    }
    call(ctx, "members_add", account="acme", user="alice@contoso.com")  # twice: one membership
    call(ctx, "members_add", account="acme", user="bob")
    call(ctx, "members_add", account="other", user="alice@contoso.com")
    assert call(ctx, "members_list", account="acme").body["members"] == ["alice@contoso.com", "bob"]
    assert call(ctx, "members_remove", account="acme", user="bob").status == 200
    assert call(ctx, "members_remove", account="acme", user="bob").status == 200  # idempotent
    assert call(ctx, "members_list", account="acme").body["members"] == ["alice@contoso.com"]
    assert MemberRepo(ctx.storage, ctx.clock).accounts_of("ALICE@contoso.com") == ["acme", "other"]


@pytest.mark.parametrize("user", ["", "a b", "x/y", "q?", "h#", "a" * 300])
def test_a_malformed_user_is_refused_naming_the_field(ctx, user):
    answer = call(ctx, "members_add", account="acme", user=user)
    assert (answer.status, answer.body["error"]["field"]) == (400, "user")
    assert call(ctx, "members_list", account="acme").body["members"] == []


def test_members_cli_verbs(ctx, settings, monkeypatch, capsys):
    monkeypatch.setenv("AzureWebJobsStorage", settings.storage_connection)
    monkeypatch.setenv("EXPORT_TABLE_PREFIX", settings.table_prefix)
    monkeypatch.setenv("EXPORT_SECRET_KEY", settings.secret_key)
    assert cli.main(["members", "add", "--account", "acme", "carol@contoso.com"]) == 0
    assert json.loads(capsys.readouterr().out)["member"] is True
    assert cli.main(["members", "list", "--account", "acme"]) == 0
    assert json.loads(capsys.readouterr().out)["members"] == ["carol@contoso.com"]
    assert cli.main(["members", "remove", "--account", "acme", "carol@contoso.com"]) == 0
    capsys.readouterr()
    assert cli.main(["members", "list", "--account", "acme"]) == 0
    assert json.loads(capsys.readouterr().out)["members"] == []


# ------------------------------------------------------------------ the signed-in user


def test_the_user_comes_from_the_principal_headers():
    assert access.principal_user({"X-MS-CLIENT-PRINCIPAL": principal("Alice@Contoso.com")}) == "alice@contoso.com"
    assert access.principal_user({"x-ms-client-principal": principal("bob@x.org", "upn")}) == "bob@x.org"
    assert access.principal_user({"X-MS-CLIENT-PRINCIPAL-NAME": "carol@x.org"}) == "carol@x.org"
    assert access.principal_user({}) is None
    assert access.principal_user({"X-MS-CLIENT-PRINCIPAL": "%%%not base64"}) is None
    assert access.principal_user({"X-MS-CLIENT-PRINCIPAL-NAME": "has space"}) is None


def test_headers_are_believed_only_where_app_service_authentication_is_on():
    assert access.app_service_auth_enabled({"WEBSITE_AUTH_ENABLED": "True"})
    assert not access.app_service_auth_enabled({})
    assert not access.app_service_auth_enabled({"WEBSITE_AUTH_ENABLED": "False"})


def _api(function: str, method: str, url: str, route_params: dict, headers: dict | None = None) -> tuple[int, dict]:
    handler = FUNCTIONS[function].get_user_function()
    answer = handler(func.HttpRequest(method, url, body=b"", route_params=route_params, headers=headers or {}))
    return answer.status_code, json.loads(answer.get_body())


def test_api_calls_on_behalf_of_a_signed_in_user_are_authorized_by_account(ctx, members, monkeypatch):
    triggers.use_context(ctx)
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    try:
        members.add("acme", "alice@contoso.com")
        as_alice = {"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com")}
        as_mallory = {"X-MS-CLIENT-PRINCIPAL": principal("mallory@evil.example")}
        url = "https://app.example/api/accounts/acme/integrations"
        # A function-key call (no principal) is service-to-service, as before.
        assert _api("integrations", "GET", url, {"account": "acme"})[0] == 200
        assert _api("integrations", "GET", url, {"account": "acme"}, as_alice)[0] == 200
        # A non-member gets exactly what an account that does not exist gets.
        existing = _api("integrations", "GET", url, {"account": "acme"}, as_mallory)
        missing = _api("integrations", "GET", url.replace("acme", "nobody"), {"account": "nobody"}, as_mallory)
        assert existing[0] == missing[0] == 404
        assert json.dumps(existing[1]).replace("acme", "X") == json.dumps(missing[1]).replace("nobody", "X")
        assert (
            _api("ucd_catalog", "GET", "https://app.example/api/ucd/acme/catalog", {"account": "acme"}, as_mallory)[0]
            == 404
        )
        # Members are managed by operators, never by a signed-in user (even a member).
        status, _ = _api(
            "members", "GET", "https://app.example/api/accounts/acme/members", {"account": "acme"}, as_alice
        )
        assert status == 403
    finally:
        triggers.use_context(None)


# ------------------------------------------------------------------ the console's sign-in and account pages


def test_the_development_sign_in_exists_only_when_serve_enables_it(plain_host, dev_host):
    off = Browser(base(plain_host))
    assert off.get("/console/sign-in").status == 503  # no sign-in of any kind is set up
    assert off.get("/console").status == 503
    on = Browser(base(dev_host))
    assert on.get("/console", follow=False).headers["Location"] == "/console/sign-in"
    assert on.get("/console/sign-in").status == 200


def test_sign_in_needs_its_csrf_token_and_gives_a_strict_cookie(dev_host):
    browser = Browser(base(dev_host))
    page = browser.get("/console/sign-in")
    assert browser.post("/console/sign-in", {"user": "alice"}).status == 403  # no token
    answer = browser.post("/console/sign-in", {"user": "alice", "csrf_token": page.csrf()}, follow=False)
    assert answer.status == 303
    cookie = next(c for c in answer.set_cookies if c.startswith("console_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # serve is plain http on this machine; see the https test below
    assert "alice" in browser.get("/console").text


def test_the_session_cookie_is_secure_over_https(ctx, monkeypatch):
    triggers.use_context(ctx)
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    try:
        handler = FUNCTIONS["console_home"].get_user_function()
        answer = handler(func.HttpRequest("GET", "https://app.example/console", body=b"", headers={}))
        assert answer.status_code == 303  # not signed in: to App Service Authentication's sign-in
        assert answer.headers["Location"].startswith("/.auth/login/aad")
        cookie = answer.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        triggers.use_context(None)


def test_in_azure_the_console_reads_the_principal_and_offers_no_development_sign_in(ctx, members, monkeypatch):
    triggers.use_context(ctx)
    try:
        members.add("acme", "alice@contoso.com")
        pages = FUNCTIONS["console_pages"].get_user_function()
        signed_in = {"X-MS-CLIENT-PRINCIPAL": principal("alice@contoso.com")}
        # Without App Service Authentication in front, the headers are not believed at all.
        off = pages(func.HttpRequest("GET", "https://app.example/console/accounts/acme", body=b"", headers=signed_in))
        assert off.status_code == 503
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
        page = pages(func.HttpRequest("GET", "https://app.example/console/accounts/acme", body=b"", headers=signed_in))
        assert page.status_code == 200 and b"0 of 5 destinations used" in page.get_body()
        sign_in = pages(func.HttpRequest("GET", "https://app.example/console/sign-in", body=b"", headers={}))
        assert sign_in.status_code == 404
    finally:
        triggers.use_context(None)


def test_a_non_member_sees_exactly_what_a_missing_account_shows(dev_host, members):
    members.add("acme", "alice")
    outsider = Browser(base(dev_host))
    outsider.sign_in("mallory")
    existing = outsider.get("/console/accounts/acme")
    missing = outsider.get("/console/accounts/nobody")
    assert existing.status == missing.status == 404
    assert existing.text.replace("acme", "X") == missing.text.replace("nobody", "X")
    for path in ("/new", "/integrations/0123456789ab/delete", "/wizard/" + "0" * 32 + "/authentication"):
        assert outsider.get("/console/accounts/acme" + path).text.replace("acme", "X") == missing.text.replace(
            "nobody", "X"
        )
    page = outsider.get("/console")
    answer = outsider.submit(page, "/console/accounts/acme/integrations/0123456789ab/pause", {})
    assert answer.status == 404 and answer.text.replace("acme", "X") == missing.text.replace("nobody", "X")
    member = Browser(base(dev_host))
    member.sign_in("alice")
    assert member.get("/console/accounts/acme").status == 200


def test_every_post_needs_the_csrf_token_of_its_own_session_and_user(dev_host, members):
    members.add("acme", "alice")
    members.add("acme", "bob")
    alice, bob = Browser(base(dev_host)), Browser(base(dev_host))
    alice.sign_in("alice")
    bob.sign_in("bob")
    page = alice.get("/console/accounts/acme/new")
    assert alice.post("/console/accounts/acme/new", {"type": "azure_blob"}).status == 403
    assert alice.post("/console/accounts/acme/new", {"type": "azure_blob", "csrf_token": "forged"}).status == 403
    # Bob's session cannot use Alice's token.
    assert bob.post("/console/accounts/acme/new", {"type": "azure_blob", "csrf_token": page.csrf()}).status == 403
    assert alice.submit(page, "/console/accounts/acme/new", {"type": "azure_blob"}).status == 200


def test_every_page_sends_a_strict_content_security_policy(dev_host, members):
    members.add("acme", "alice")
    browser = Browser(base(dev_host))
    browser.sign_in("alice")
    for path in ("/console/sign-in", "/console/accounts/acme", "/console/accounts/acme/new", "/console/accounts/x"):
        headers = browser.get(path).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy and headers["X-Content-Type-Options"] == "nosniff"
    page = browser.get("/console/accounts/acme").text
    assert "<script>" not in page and " style=" not in page and "<style" not in page


def test_without_the_secret_key_the_console_names_the_setting(ctx):
    console = Console(dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, secret_key="")), True)
    answer = console.handle(Request("GET", "/console/sign-in"))
    assert answer.status == 500 and b"EXPORT_SECRET_KEY" in answer.body


def test_the_assets_are_served_by_the_app_and_nothing_else_of_its_files(dev_host):
    browser = Browser(base(dev_host))
    css, js = browser.get("/console/static/console.css"), browser.get("/console/static/console.js")
    assert (css.status, css.headers["Content-Type"]) == (200, "text/css; charset=utf-8")
    assert (js.status, js.headers["Content-Type"]) == (200, "text/javascript; charset=utf-8")
    assert "nosniff" == js.headers["X-Content-Type-Options"]
    for path in ("/console/static/../app.py", "/console/static/%2e%2e/app.py", "/console/static/nope.js"):
        assert browser.get(path).status == 404
