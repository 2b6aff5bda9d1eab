"""One path: the same access tests against the function app's handlers (as the Azure host calls them)
and against `serve` over real HTTP on loopback. A signed-in user who is not a member is refused
exactly as the function app refuses them, whichever path the request takes."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass

import azure.functions as func
import pytest

from exporter import triggers
from exporter.local.serve import LocalHost
from exporter.members import MemberRepo
from tests.app_functions import FUNCTIONS

UPSERT = {"users": [{"user_id": "u", "events": [{"event_name": "purchase", "timestamp": "2026-11-28T10:00:00Z"}]}]}


@dataclass(frozen=True)
class Call:
    """One API request: the function the host routes it to (with its route parameters) and its HTTP form."""

    function: str
    method: str
    path: str
    route_params: dict[str, str]
    body: object = None


CALLS = {
    "members add": Call("member", "PUT", "/api/accounts/acme/members/mallory", {"account": "acme", "user": "mallory"}),
    "members remove": Call(
        "member", "DELETE", "/api/accounts/acme/members/alice", {"account": "acme", "user": "alice"}
    ),
    "members list": Call("members", "GET", "/api/accounts/acme/members", {"account": "acme"}),
    "integrations list": Call("integrations", "GET", "/api/accounts/acme/integrations", {"account": "acme"}),
    "integrations create": Call(
        "integrations", "POST", "/api/accounts/acme/integrations", {"account": "acme"}, {"name": "x"}
    ),
    "integration show": Call(
        "integration", "GET", "/api/accounts/acme/integrations/0123456789ab", {"account": "acme", "id": "0123456789ab"}
    ),
    "catalog": Call("ucd_catalog", "GET", "/api/ucd/acme/catalog", {"account": "acme"}),
    "identity": Call("account_identity", "GET", "/api/accounts/acme/identity", {"account": "acme"}),
    "upsert": Call("ucd_upsert", "POST", "/api/ucd/acme/upsert", {"account": "acme"}, UPSERT),
}
MEMBER_CALLS = ("members add", "members remove", "members list")
ACCOUNT_CALLS = tuple(name for name in CALLS if name not in MEMBER_CALLS)


def principal(name: str) -> str:
    body = {"auth_typ": "aad", "name_typ": "upn", "claims": [{"typ": "upn", "val": name}]}
    return base64.b64encode(json.dumps(body).encode()).decode()


AS_MALLORY = {"X-MS-CLIENT-PRINCIPAL-NAME": "mallory"}
AS_MALLORY_CLAIMS = {"X-MS-CLIENT-PRINCIPAL": principal("mallory@evil.example")}
AS_ALICE = {"X-MS-CLIENT-PRINCIPAL": principal("alice")}


class FunctionAppPath:
    """The function app's handler called with a func.HttpRequest, as the Azure host calls it."""

    def __call__(self, call: Call, headers: dict[str, str], account: str = "acme") -> tuple[int, dict]:
        body = b"" if call.body is None else json.dumps(call.body).encode()
        request = func.HttpRequest(
            call.method,
            "https://app.example" + call.path.replace("acme", account),
            body=body,
            route_params={k: v.replace("acme", account) for k, v in call.route_params.items()},
            params={},
            headers={"Content-Type": "application/json", **headers},
        )
        answer = FUNCTIONS[call.function].get_user_function()(req=request)
        return answer.status_code, json.loads(answer.get_body())


class ServePath:
    """The same request over HTTP to `serve` on loopback."""

    def __init__(self, host: LocalHost):
        self.base = host.url.removesuffix("/api/")

    def __call__(self, call: Call, headers: dict[str, str], account: str = "acme") -> tuple[int, dict]:
        body = None if call.body is None else json.dumps(call.body).encode()
        request = urllib.request.Request(
            self.base + call.path.replace("acme", account),
            data=body,
            method=call.method,
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture(params=["function app", "serve"])
def path(request, ctx):
    if request.param == "function app":
        triggers.use_context(ctx)
        try:
            yield FunctionAppPath()
        finally:
            triggers.use_context(None)
    else:
        host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600).start()
        try:
            yield ServePath(host)
        finally:
            host.stop()


@pytest.fixture
def members(ctx) -> MemberRepo:
    repo = MemberRepo(ctx.storage, ctx.clock)
    repo.add("acme", "alice")
    return repo


@pytest.fixture
def signed_in(monkeypatch):
    """App Service Authentication in front: the principal headers are believed."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "true")


@pytest.mark.parametrize("who", [AS_MALLORY, AS_MALLORY_CLAIMS, AS_ALICE], ids=["name", "claims", "member"])
def test_a_signed_in_user_cannot_manage_members(path, members, signed_in, who):
    for name in MEMBER_CALLS:
        status, body = path(CALLS[name], who)
        assert (status, body["error"]["code"], body["error"]["field"]) == (403, "forbidden", "user"), name
    assert members.list("acme")["members"] == ["alice"], "mallory did not become a member, alice was not removed"


@pytest.mark.parametrize("name", ACCOUNT_CALLS)
def test_a_non_member_gets_what_a_missing_account_gets(path, ctx, members, signed_in, name):
    existing = path(CALLS[name], AS_MALLORY)
    missing = path(CALLS[name], AS_MALLORY, account="nobody")
    assert existing[0] == missing[0] == 404, existing
    assert json.dumps(existing[1]).replace("acme", "X") == json.dumps(missing[1]).replace("nobody", "X")
    assert existing[1]["error"]["field"] == "account"
    assert ctx.ucd.catalog("acme")["events"] == {}, "nothing stored"


def test_a_member_and_an_operator_are_let_through(path, members, signed_in):
    assert path(CALLS["integrations list"], AS_ALICE) == (200, {"integrations": []})
    assert path(CALLS["catalog"], AS_ALICE)[0] == 200
    assert path(CALLS["members list"], {}) == (
        200,
        {"account": "acme", "members": ["alice"]},
    )  # no principal: the function key's caller


def test_an_unreadable_principal_is_refused(path, members, signed_in):
    status, body = path(CALLS["integrations list"], {"X-MS-CLIENT-PRINCIPAL-NAME": "has space"})
    assert (status, body["error"]["code"]) == (403, "forbidden")


def test_without_app_service_authentication_the_headers_are_not_believed(path, members, monkeypatch):
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    # As in the function app: no authentication in front means no signed-in user, only the key's caller.
    assert path(CALLS["integrations list"], AS_MALLORY) == (200, {"integrations": []})


def test_both_paths_answer_every_call_with_the_same_status_and_body(ctx, members, signed_in):
    host = LocalHost(ctx, port=0, timer_seconds=3600, queue_poll_seconds=3600).start()
    triggers.use_context(ctx)
    try:
        for name, call in CALLS.items():
            if name == "upsert":
                continue  # stores for the member: compared in the tests above, not twice here
            for who in (AS_MALLORY, AS_ALICE, {"X-MS-CLIENT-PRINCIPAL-NAME": "has space"}):
                assert FunctionAppPath()(call, who) == ServePath(host)(call, who), (name, who)
    finally:
        triggers.use_context(None)
        host.stop()
