"""The keyless Azure body's `account_url` is a customer's address, as a connection string's BlobEndpoint is:
checked by the egress policy before any connection, dialled at the address checked (no second lookup),
refused naming `destination.account_url`. The platform's own endpoints (the Entra authority, STS, Google's
token services) are operator settings, not a tenant's: they are not under the policy.

No packet leaves loopback: names resolve through the injected resolver, and the connector records every
attempt (tests/egress_helpers.py). The platform's Entra sign-in is replaced by a token held by the test, so
the storage client goes straight to the account.
"""

from __future__ import annotations

import dataclasses

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError

from exporter import egress
from exporter.context import Context
from exporter.destinations import keyless_azure
from exporter.destinations.azure_errors import ACCOUNT_URL_FIELD, AzureErrors
from exporter.errors import DestinationError, InputError
from tests.destination_helpers import integration_body
from tests.egress_helpers import PUBLIC, Listener, strict
from tests.export_helpers import ACCOUNT
from tests.helpers import call

APP_ID = "0b9d6d52-4bd0-4b8e-9a5f-3a2f6c1e8d11"
TENANT = "3f2c8a9e-1b7d-4e5f-9a0b-6c1d2e3f4a5b"


class HeldToken:
    """The platform's Entra token, already held: no request to any authority."""

    def __init__(self) -> None:
        self.asked = 0

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.asked += 1
        return AccessToken("held-by-the-test", 4102444800)


@pytest.fixture
def held(monkeypatch) -> HeldToken:
    token = HeldToken()
    monkeypatch.setattr(keyless_azure, "credential", lambda tenant_id: token)
    return token


@pytest.fixture
def keyless_ctx(settings, clock) -> Context:
    return Context.create(dataclasses.replace(settings, azure_client_id=APP_ID), clock)


def body(url: str) -> dict:
    return {"type": "azure_blob", "account_url": url, "tenant_id": TENANT, "container": "exports", "prefix": "p/"}


def refused_with_400(ctx, url: str) -> dict:
    answer = call(ctx, "integrations_verify", body(url), account=ACCOUNT)
    assert (answer.status, answer.body["error"]["field"]) == (400, ACCOUNT_URL_FIELD), answer.body
    created = call(ctx, "integrations_create", integration_body(body(url)), account=ACCOUNT)
    assert (created.status, created.body["error"]["field"]) == (400, ACCOUNT_URL_FIELD), created.body
    assert call(ctx, "integrations_list", account=ACCOUNT).body == {"integrations": []}
    return answer.body["error"]


@pytest.mark.parametrize(
    "url, names",
    [
        ("https://127.0.0.1/acct", {}),
        ("https://internal.customer.example/acct", {"internal.customer.example": [[PUBLIC, "10.20.30.40"]]}),
        ("https://metadata.google.internal/acct", {"metadata.google.internal": [["169.254.169.254"]]}),
        ("https://no-such-host.customer.example/acct", {}),
    ],
)
def test_an_account_url_that_is_not_public_is_refused_before_any_connection(keyless_ctx, held, url, names):
    with egress.using(strict(names)) as policy:
        error = refused_with_400(keyless_ctx, url)
    assert "public" in error["message"] or "resolve" in error["message"], error
    assert policy.connect.attempts == [] and held.asked == 0, "refused before a token or a connection"


def test_a_loopback_listener_sees_no_connection_from_a_keyless_body(keyless_ctx, held):
    listener = Listener()
    try:
        names = {"localhost": [["127.0.0.1", "::1"]]}
        with egress.using(strict(names, dial=True)) as policy:
            for base in (f"https://127.0.0.1:{listener.port}", f"https://localhost:{listener.port}"):
                refused_with_400(keyless_ctx, f"{base}/acct")
        assert listener.connections == 0 and policy.connect.attempts == []
    finally:
        listener.stop()


def test_an_account_url_that_turns_inward_after_the_check_is_refused_at_the_connection(keyless_ctx, held):
    listener = Listener()
    try:
        rebinding = {"files.customer.example": [[PUBLIC], ["127.0.0.1"]]}
        with egress.using(strict(rebinding, dial=True)) as policy:
            error = refused_with_400(keyless_ctx, f"https://files.customer.example:{listener.port}/acct")
        assert "public" in error["message"]
        assert policy.connect.attempts == [] and listener.connections == 0
    finally:
        listener.stop()


def test_the_keyless_connection_goes_to_the_checked_address(keyless_ctx, held):
    with egress.using(strict({"files.customer.example": [[PUBLIC]]})) as policy:
        answer = call(keyless_ctx, "integrations_verify", body("https://files.customer.example/acct"), account=ACCOUNT)
    assert answer.status == 422, answer.body
    assert "account URL" in answer.body["error"]["message"], "the keyless words name the account URL"
    assert policy.connect.attempts == [(PUBLIC, 443)], "dialled once, at the address checked"
    assert held.asked >= 1, "the platform's token was asked for (its authority is not under the policy)"


def test_a_redirect_from_an_account_url_is_refused_naming_its_field():
    """The storage SDK raises a 3xx as an HttpResponseError (redirects are off): the map names the field."""
    errors = AzureErrors("exports", "https://files.customer.example/acct", ACCOUNT_URL_FIELD)
    redirect = HttpResponseError(message="Found")
    redirect.status_code = 302
    verifying = errors.classify(redirect, verifying=True)
    assert isinstance(verifying, InputError) and verifying.field == ACCOUNT_URL_FIELD
    exporting = errors.classify(redirect)
    assert isinstance(exporting, DestinationError) and exporting.field == ACCOUNT_URL_FIELD
