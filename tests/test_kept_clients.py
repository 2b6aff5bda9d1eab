"""Credentials kept between one integration's jobs (exporter/destinations/kept_clients.py): never another
tenant's, never another integration's, never verification's, and a changed key is built afresh."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from exporter.destinations.gcs_body import GcsCredentials
from exporter.destinations.kept_clients import KEPT_CLIENTS, KeptClients, kept_key
from exporter.identity import Opening, PlatformIdentity, opening_for

ENDPOINT = "http://127.0.0.1:9"  # never dialled: building credentials sends nothing


def _key(email: str) -> dict[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "kept",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": email,
        "token_uri": f"{ENDPOINT}/token",
    }


@pytest.fixture(scope="module")
def key() -> dict[str, str]:
    return _key("exporter@kept.iam.gserviceaccount.com")


@pytest.fixture(autouse=True)
def _fresh() -> None:
    KEPT_CLIENTS.clear()


def _opened(account: str, session: str, credentials: GcsCredentials):
    with opening_for(Opening(account, session, lambda: "external", PlatformIdentity())):
        return credentials.kept_google_credentials()


def test_one_integrations_jobs_share_its_credentials(key):
    credentials = GcsCredentials(key, ENDPOINT)
    first = _opened("tenant-a", "integration-1", credentials)
    assert _opened("tenant-a", "integration-1", GcsCredentials(dict(key), ENDPOINT)) is first


def test_another_tenant_never_gets_them_even_with_the_same_key(key):
    credentials = GcsCredentials(key, ENDPOINT)
    a = _opened("tenant-a", "integration-1", credentials)
    b = _opened("tenant-b", "integration-1", credentials)
    assert b is not a
    assert _opened("tenant-a", "integration-1", credentials) is a
    assert _opened("tenant-b", "integration-1", credentials) is b


def test_another_integration_of_the_tenant_builds_its_own(key):
    credentials = GcsCredentials(key, ENDPOINT)
    assert _opened("tenant-a", "integration-1", credentials) is not _opened("tenant-a", "integration-2", credentials)


def test_a_changed_key_or_endpoint_is_built_afresh(key):
    first = _opened("tenant-a", "integration-1", GcsCredentials(key, ENDPOINT))
    rotated = _key("exporter@kept.iam.gserviceaccount.com")
    assert _opened("tenant-a", "integration-1", GcsCredentials(rotated, ENDPOINT)) is not first
    assert _opened("tenant-a", "integration-1", GcsCredentials(key, "http://127.0.0.1:10")) is not first


def test_verification_and_openings_outside_a_job_are_never_kept(key):
    credentials = GcsCredentials(key, ENDPOINT)
    assert _opened("tenant-a", "verify", credentials) is not _opened("tenant-a", "verify", credentials)
    assert credentials.kept_google_credentials() is not credentials.kept_google_credentials()


def test_the_key_shows_no_trace_of_the_secret(key):
    with opening_for(Opening("tenant-a", "integration-1", lambda: "external", PlatformIdentity())):
        kept = kept_key("gcs", {"key": key})
    assert kept is not None
    shown = repr(kept) + str(kept)
    assert kept.digest not in shown and "PRIVATE" not in shown and key["private_key"][40:80] not in shown


def test_a_failed_build_keeps_nothing_and_the_oldest_goes_first():
    kept = KeptClients(limit=2)
    with opening_for(Opening("tenant-a", "integration-1", lambda: "external", PlatformIdentity())):
        keys = [kept_key("s3", {"n": n}) for n in range(3)]

    def failing() -> object:
        raise ValueError("no")

    with pytest.raises(ValueError):
        kept.get(keys[0], failing)
    first = kept.get(keys[0], object)
    assert kept.get(keys[0], object) is first
    kept.get(keys[1], object)
    kept.get(keys[2], object)  # the limit: keys[0], the least recently used, goes
    assert kept.get(keys[0], object) is not first
