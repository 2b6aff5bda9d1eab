"""GCS by the platform's identity: google-auth's real external-account (token exchange) and
impersonation flows against loopback stand-ins of Google's STS and IAM Credentials
(exporter/local/federation.py), and the GCS emulator for the bucket (it ignores tokens: what the
tests prove is that the flows ran and that their refusals are credential errors)."""

from __future__ import annotations

import json

import pytest

from exporter.context import Context
from exporter.errors import CredentialError
from tests.destination_helpers import create, new_bucket_name
from tests.export_helpers import ACCOUNT, assert_exactly_once, due_at, populate, tick_collecting
from tests.helpers import call
from tests.keyless_helpers import PLATFORM_SA, GcsKeylessKit, google_platform

CUSTOMER_SA = "exporter@customer-project.iam.gserviceaccount.com"


@pytest.fixture
def google(tmp_path, monkeypatch, settings):
    federation, configured = google_platform(tmp_path, monkeypatch, settings)
    yield federation, configured
    federation.stop()


@pytest.fixture
def gctx(google, clock) -> Context:
    return Context.create(google[1], clock)


def kit_for(gcs_emulator, federation, tag, impersonate=None) -> GcsKeylessKit:
    bucket = new_bucket_name(tag)
    gcs_emulator.client().create_bucket(bucket)
    return GcsKeylessKit(gcs_emulator, federation, bucket, impersonate)


@pytest.mark.parametrize("impersonate", [None, CUSTOMER_SA], ids=["platform's own", "impersonating"])
def test_a_keyless_gcs_integration_exports_windows_through_the_real_flows(
    gctx, clock, google, gcs_emulator, tag, impersonate
):
    federation = google[0]
    kit = kit_for(gcs_emulator, federation, tag, impersonate)
    verified = call(gctx, "integrations_verify", kit.body(), account=ACCOUNT)
    assert verified.status == 200 and verified.body["test_file"]["deleted"] is True, verified.body
    assert federation.exchanged, "the managed identity's token was exchanged at the (loopback) STS"
    who = [email for email, _ in federation.impersonated]
    assert PLATFORM_SA in who, "the federated token impersonated the platform's service account"
    assert (CUSTOMER_SA in who) == bool(impersonate), "and that one the customer's, when asked"

    iid = create(gctx, clock, kit)
    shown = call(gctx, "integrations_show", account=ACCOUNT, id=iid).body["destination"]
    assert shown["impersonate"] == impersonate and "service_account_key" not in shown
    opened = json.loads(gctx.integrations.secrets.open(gctx.repo.get(ACCOUNT, iid).destination.sealed_secret))
    assert opened == {"service_account_key": None, "endpoint_url": gcs_emulator.url, "impersonate": impersonate}
    populate(gctx, clock, range(3))
    clock.set(due_at(3))
    tick_collecting(gctx, [])
    assert_exactly_once(gctx, kit, iid)


def test_the_token_exchange_refused_is_a_credential_error(gctx, google, gcs_emulator, tag):
    federation = google[0]
    federation.accepted.clear()  # the pool no longer trusts the platform's managed identity
    kit = kit_for(gcs_emulator, federation, tag)
    answer = call(gctx, "integrations_verify", kit.body(), account=ACCOUNT)
    assert answer.status == 422 and answer.body["error"]["code"] == CredentialError.code, answer.body
    assert PLATFORM_SA in answer.body["error"]["message"] and "token exchange" in answer.body["error"]["message"]
    assert kit.names() == []


def test_impersonation_refused_says_which_role_to_grant(gctx, google, gcs_emulator, tag):
    federation = google[0]
    federation.refused.add(CUSTOMER_SA)
    kit = kit_for(gcs_emulator, federation, tag, CUSTOMER_SA)
    answer = call(gctx, "integrations_verify", kit.body(), account=ACCOUNT)
    assert answer.status == 422 and answer.body["error"]["code"] == CredentialError.code, answer.body
    message = answer.body["error"]["message"]
    assert CUSTOMER_SA in message and PLATFORM_SA in message and "roles/iam.serviceAccountTokenCreator" in message


def test_keyless_gcs_bodies_are_checked(gctx, ctx, google, gcs_emulator, tag):
    kit = kit_for(gcs_emulator, google[0], tag, CUSTOMER_SA)
    bad = call(gctx, "integrations_verify", kit.body(impersonate="not-an-email"), account=ACCOUNT)
    assert bad.status == 400 and bad.body["error"]["field"] == "destination.impersonate"
    key = {"type": "service_account"}
    both = call(gctx, "integrations_verify", kit.body(service_account_key=key), account=ACCOUNT)
    assert both.status == 400 and both.body["error"]["field"].startswith("destination.")
    unconfigured = call(ctx, "integrations_verify", kit.body(), account=ACCOUNT)  # no platform identity set up
    assert unconfigured.status == 400 and unconfigured.body["error"]["field"] == "destination.service_account_key"


def test_the_platforms_token_requests_are_not_under_the_egress_policy_but_the_endpoint_is(gctx, google, tag):
    """The token exchange and the impersonation go to the operator's endpoints (here on loopback over http,
    which the production policy would refuse for a customer's address); the customer's endpoint_url is still
    checked and dialled at the address checked."""
    from exporter import egress
    from tests.egress_helpers import PUBLIC, strict

    federation = google[0]
    body = {
        "type": "gcs",
        "bucket": new_bucket_name(tag),
        "prefix": "p/",
        "endpoint_url": "https://files.customer.example",
    }
    with egress.using(strict({"files.customer.example": [[PUBLIC]]})) as policy:
        answer = call(gctx, "integrations_verify", {**body, "impersonate": CUSTOMER_SA}, account=ACCOUNT)
        inward = call(gctx, "integrations_verify", {**body, "endpoint_url": "https://127.0.0.1"}, account=ACCOUNT)
    assert answer.status == 422 and "could not reach Cloud Storage" in answer.body["error"]["message"], answer.body
    assert federation.exchanged and CUSTOMER_SA in [email for email, _ in federation.impersonated]
    assert policy.connect.attempts == [(PUBLIC, 443)], "only the customer's endpoint, at the checked address"
    assert (inward.status, inward.body["error"]["field"]) == (400, "destination.endpoint_url"), inward.body
