"""The egress policy: every address a customer supplies (S3 and GCS endpoint_url, a key's token_uri, Azure's
BlobEndpoint) is https, resolves only to public addresses, is dialled at the address that was checked (no
second lookup) and never redirected. A refusal is a 400 naming the field, before any connection.

No test here sends a packet off loopback: names resolve through an injected resolver, and a connection to
anything but loopback goes to a connector that records it and refuses it (tests/egress_helpers.py).
"""

from __future__ import annotations

import datetime
import logging

import pytest

from exporter import egress
from exporter.egress import EgressPolicy, not_public, trusted_host
from exporter.errors import ConfigurationError
from exporter.settings import Settings
from tests.destination_helpers import integration_body
from tests.egress_helpers import (
    ADDRESS_FIELDS,
    PUBLIC,
    PUBLIC_TOKENS,
    Listener,
    body_for,
    strict,
    with_path,
)
from tests.export_helpers import ACCOUNT
from tests.helpers import call

# ------------------------------------------------------------------ which addresses are public (pure)


@pytest.mark.parametrize(
    "address, category",
    [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.255", "carrier-grade NAT"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fd00::1", "unique-local"),
        ("fc00::1", "unique-local"),
        ("fd00:ec2::254", "unique-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "link-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("::10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b:1::1", "reserved"),  # local-use NAT64
        ("2001::1", "reserved"),  # Teredo: its IPv4 is hidden
    ],
)
def test_every_non_public_category_is_refused_by_name(address, category):
    assert not_public(address) == category


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
)
def test_public_addresses_pass(address):
    assert not_public(address) is None


@pytest.mark.parametrize(
    "host, trusted",
    [
        ("acct.blob.core.windows.net", True),
        ("acct-secondary.blob.core.windows.net", True),
        ("s3.eu-west-1.amazonaws.com", True),
        ("s3.amazonaws.com", True),
        ("my-bucket.s3.us-east-1.amazonaws.com", True),
        ("s3.dualstack.eu-west-1.amazonaws.com", True),
        ("storage.googleapis.com", True),
        ("oauth2.googleapis.com", True),
        ("ec2-10-0-0-1.eu-west-1.compute.amazonaws.com", False),  # resolves to a private address inside AWS
        ("s3-foo-1.eu-west-1.elb.amazonaws.com", False),  # a customer's load balancer
        ("blob.core.windows.net.evil.example", False),
        ("evil.example", False),
        ("metadata.google.internal", False),
    ],
)
def test_only_the_clouds_own_endpoints_are_trusted(host, trusted):
    assert trusted_host(host) is trusted


# ------------------------------------------------------------------ each address field, refused with a 400

REFUSED = [
    ("https://127.0.0.1", {}),
    ("https://10.0.0.1", {}),
    ("https://169.254.169.254", {}),
    ("https://[::1]", {}),
    ("https://[fd00::1]", {}),
    ("https://[::ffff:127.0.0.1]", {}),
    ("https://internal.customer.example", {"internal.customer.example": [["93.184.216.34", "10.20.30.40"]]}),
    ("https://metadata.google.internal", {"metadata.google.internal": [["169.254.169.254"]]}),
    ("https://no-such-host.customer.example", {}),
    ("http://files.customer.example", {"files.customer.example": [[PUBLIC]]}),
]


def refused_with_400(ctx, body: dict, field: str) -> dict:
    """Verify and create both answer 400 naming the field; nothing is stored."""
    answer = call(ctx, "integrations_verify", body, account=ACCOUNT)
    assert answer.status == 400, answer.body
    assert (answer.body["error"]["code"], answer.body["error"]["field"]) == ("invalid_input", field), answer.body
    created = call(ctx, "integrations_create", integration_body(body), account=ACCOUNT)
    assert (created.status, created.body["error"]["field"]) == (400, field), created.body
    assert call(ctx, "integrations_list", account=ACCOUNT).body == {"integrations": []}
    return answer.body["error"]


@pytest.mark.parametrize("url, names", REFUSED, ids=[u for u, _ in REFUSED])
@pytest.mark.parametrize("address_field", ADDRESS_FIELDS)
def test_each_address_field_refuses_what_is_not_public_https_before_any_connection(ctx, address_field, url, names):
    with egress.using(strict(names)) as policy:
        error = refused_with_400(
            ctx, body_for(address_field, with_path(address_field, url)), ADDRESS_FIELDS[address_field]
        )
    assert policy.connect.attempts == [], "refused before any connection"
    assert (
        "https" in error["message"]
        if url.startswith("http:")
        else "public" in error["message"] or "resolve" in error["message"]
    )


@pytest.mark.parametrize("address_field", ADDRESS_FIELDS)
def test_a_loopback_listener_sees_no_connection_at_all(ctx, address_field):
    listener = Listener()
    try:
        names = {"localhost": [["127.0.0.1", "::1"]]}
        with egress.using(strict(names, dial=True)) as policy:
            for base in (f"https://127.0.0.1:{listener.port}", listener.url, f"https://localhost:{listener.port}"):
                refused_with_400(
                    ctx, body_for(address_field, with_path(address_field, base)), ADDRESS_FIELDS[address_field]
                )
        assert listener.connections == 0 and policy.connect.attempts == []
    finally:
        listener.stop()


# ------------------------------------------------------------------ at connection time: pinned, checked again


def held_token(monkeypatch) -> None:
    """A service-account key that already holds a token: the GCS client goes straight to the endpoint."""
    from google.oauth2 import service_account

    def refresh(self, request):
        self.token, self.expiry = "held-by-the-test", datetime.datetime(2100, 1, 1)

    monkeypatch.setattr(service_account.Credentials, "refresh", refresh)


@pytest.mark.parametrize("address_field", ADDRESS_FIELDS)
def test_a_name_that_turns_inward_after_the_check_is_refused_at_the_connection(ctx, monkeypatch, address_field):
    """DNS rebinding: public when verified, loopback when connected. The connection resolves once more
    (its own single lookup), checks, and refuses: nothing is dialled."""
    if address_field == "gcs endpoint_url":
        held_token(monkeypatch)
    listener = Listener()
    try:
        rebinding = {"files.customer.example": [[PUBLIC], ["127.0.0.1"]]}
        url = with_path(address_field, f"https://files.customer.example:{listener.port}")
        with egress.using(strict(rebinding, dial=True)) as policy:
            error = refused_with_400(ctx, body_for(address_field, url), ADDRESS_FIELDS[address_field])
        assert "public" in error["message"]
        assert policy.connect.attempts == [] and listener.connections == 0
    finally:
        listener.stop()


@pytest.mark.parametrize("address_field", ADDRESS_FIELDS)
def test_the_connection_goes_to_the_checked_address(ctx, address_field):
    names = {"files.customer.example": [[PUBLIC]], "tokens.customer.example": [[PUBLIC_TOKENS]]}
    url = with_path(address_field, "https://files.customer.example")
    body = body_for(address_field, url, token_uri="https://tokens.customer.example/token")
    with egress.using(strict(names)) as policy:
        answer = call(ctx, "integrations_verify", body, account=ACCOUNT)
    assert answer.status == 422, answer.body
    first = (PUBLIC_TOKENS if address_field == "gcs endpoint_url" else PUBLIC, 443)  # a key's token comes first
    assert policy.connect.attempts[:1] == [first], "dialled at the address checked, no second lookup"
    assert len(policy.connect.attempts) == 1, "one attempt: verification does not retry a customer's endpoint"


@pytest.mark.parametrize("address_field", ADDRESS_FIELDS)
def test_the_host_name_is_kept_for_the_request_while_the_checked_address_is_dialled(ctx, token_endpoint, address_field):
    listener = Listener(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    try:
        names = {"files.customer.test": [["127.0.0.1"]]}
        policy = EgressPolicy(allow_private=True, resolve=strict(names).resolve, connect=strict(dial=True).connect)
        url = with_path(address_field, f"http://files.customer.test:{listener.port}")
        with egress.using(policy):
            call(
                ctx, "integrations_verify", body_for(address_field, url, f"{token_endpoint.url}/token"), account=ACCOUNT
            )
        assert policy.connect.attempts[-1] == ("127.0.0.1", listener.port)
        assert listener.requests, "the request reached the listener"
        assert f"host: files.customer.test:{listener.port}".encode() in listener.requests[0].lower()
    finally:
        listener.stop()


@pytest.mark.parametrize("url", ["https://[::1", "https://files.customer.example:99999"])
def test_a_malformed_address_is_a_400_naming_the_field_not_a_failure(ctx, url):
    connection = f"AccountName=acct;AccountKey=YWJj;BlobEndpoint={url}"
    for body, field in [
        (
            {"type": "azure_blob", "connection_string": connection, "container": "exports"},
            "destination.connection_string",
        ),
        (
            {"type": "azure_blob", "connection_string": f"{url}/exports?sv=1&sig=x", "container": "exports"},
            "destination.connection_string",
        ),
        (body_for("s3 endpoint_url", url), "destination.endpoint_url"),
    ]:
        with egress.using(strict()):
            answer = call(ctx, "integrations_verify", {**body, "prefix": ""}, account=ACCOUNT)
        assert (answer.status, answer.body["error"]["field"]) == (400, field), answer.body


# ------------------------------------------------------------------ the setting


def test_the_setting_is_true_or_false_and_off_by_default():
    assert Settings.from_env({}).allow_private_endpoints is False
    assert Settings.from_env({"EXPORT_ALLOW_PRIVATE_ENDPOINTS": "true"}).allow_private_endpoints is True
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"EXPORT_ALLOW_PRIVATE_ENDPOINTS": "yes please"})
    assert refused.value.field == "EXPORT_ALLOW_PRIVATE_ENDPOINTS"


def test_the_app_warns_at_start_while_private_endpoints_are_allowed(caplog, monkeypatch):
    log = logging.getLogger("exporter.test")
    with caplog.at_level(logging.WARNING, logger="exporter.test"):
        assert egress.warn_if_private_allowed(log) is True  # tests run with the setting on (conftest.py)
        monkeypatch.setenv("EXPORT_ALLOW_PRIVATE_ENDPOINTS", "false")
        assert egress.warn_if_private_allowed(log) is False
    assert [r.getMessage() for r in caplog.records if "EXPORT_ALLOW_PRIVATE_ENDPOINTS=true" in r.getMessage()]
    assert len(caplog.records) == 1


def test_infra_never_allows_private_endpoints():
    from pathlib import Path

    infra = Path(__file__).parent.parent / "infra"
    assert not [
        p for p in infra.rglob("*") if p.is_file() and "EXPORT_ALLOW_PRIVATE_ENDPOINTS" in p.read_text(errors="ignore")
    ]


def test_the_clouds_default_endpoints_pass_without_a_lookup():
    policy = strict()
    for url, field in [
        ("https://acct.blob.core.windows.net", "destination.connection_string"),
        ("https://s3.eu-west-1.amazonaws.com", "destination.endpoint_url"),
        ("https://oauth2.googleapis.com/token", "destination.service_account_key.token_uri"),
    ]:
        policy.check_url(url, field)
    assert policy.resolve.lookups == []
