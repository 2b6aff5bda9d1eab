"""Azure Blob by Entra ID against Azurite with OAuth (`--oauth basic`, https with a certificate made at
start) and a loopback Entra stand-in (exporter/local/entra.py): azure-identity's ManagedIdentityCredential
and ClientAssertionCredential, and the storage SDK's bearer-token policy, do all the OAuth.

What Azurite's basic OAuth checks (its BlobTokenAuthenticator): the token's lifetime, an issuer
prefix such as https://sts.windows.net/ (any tenant), and the audience; not the signature, the
tenant or any role. So a token for another audience is refused by Azurite itself, and another
tenant is refused where Entra refuses it: at the token endpoint (no consent in that tenant).
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from exporter.context import Context
from exporter.errors import CredentialError
from exporter.local.devstorage import DEV_ACCOUNT, DEV_KEY
from exporter.local.entra import EntraStandIn, self_signed, start_azurite_oauth
from tests.destination_helpers import create, new_bucket_name
from tests.export_helpers import ACCOUNT, assert_exactly_once, due_at, populate, tick_collecting
from tests.helpers import call
from tests.keyless_helpers import trust_certificate

# One worker runs the module, so its Azurite over OAuth and Entra stand-in (a module fixture) starts once, not on each worker.
pytestmark = pytest.mark.xdist_group("azurite-oauth")

APP_ID = "0b9d6d52-4bd0-4b8e-9a5f-3a2f6c1e8d11"
CUSTOMER_TENANT = "3f2c8a9e-1b7d-4e5f-9a0b-6c1d2e3f4a5b"
OTHER_TENANT = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"


@pytest.fixture(scope="module")
def oauth_servers(tmp_path_factory):
    directory = tmp_path_factory.mktemp("entra")
    cert, key = self_signed(directory)
    azurite = start_azurite_oauth(cert, key)
    entra = EntraStandIn(APP_ID, consented={CUSTOMER_TENANT}).start(cert, key)
    yield azurite, entra, cert
    entra.stop()
    azurite.stop()


@dataclasses.dataclass
class EntraKit:
    azurite: object
    container: object  # ContainerClient (with the account key: the test's own view)
    kind: str = "azure_blob"

    def body(self, prefix: str = "insider/", **changes) -> dict:
        body = {"type": "azure_blob", "account_url": self.azurite.blob_url, "container": self.container.container_name}
        return {**body, "prefix": prefix, "tenant_id": CUSTOMER_TENANT, **changes}

    def names(self) -> list[str]:
        return sorted(b.name for b in self.container.list_blobs())

    def read(self, name: str) -> bytes:
        return self.container.download_blob(name).readall()


@pytest.fixture
def entra_ctx(oauth_servers, settings, clock, monkeypatch):
    azurite, entra, cert = oauth_servers
    trust_certificate(monkeypatch, cert)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{entra.url}/msi/token")  # the managed identity, App Service style
    monkeypatch.setenv("IDENTITY_HEADER", entra.identity_header)
    configured = dataclasses.replace(
        settings, azure_client_id=APP_ID, azure_tenant_id=OTHER_TENANT, azure_authority_host=entra.url
    )
    return Context.create(configured, clock)


@pytest.fixture
def entra_kit(oauth_servers, tag, monkeypatch) -> EntraKit:
    azurite, _entra, cert = oauth_servers
    trust_certificate(monkeypatch, cert)
    endpoint = azurite.blob_url
    connection = (
        f"DefaultEndpointsProtocol=https;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint={endpoint};"
    )
    service = BlobServiceClient.from_connection_string(connection, connection_verify=str(cert))
    return EntraKit(azurite, service.create_container(new_bucket_name(tag)))


def test_a_keyless_azure_integration_exports_windows(entra_ctx, clock, entra_kit, oauth_servers):
    entra = oauth_servers[1]
    verified = call(entra_ctx, "integrations_verify", entra_kit.body(), account=ACCOUNT)
    assert verified.status == 200 and verified.body["test_file"]["deleted"] is True, verified.body
    assert entra.assertions and entra.issued[-1][0] == CUSTOMER_TENANT, "the SDK signed in through the stand-in"
    iid = create(entra_ctx, clock, entra_kit)
    shown = call(entra_ctx, "integrations_show", account=ACCOUNT, id=iid).body["destination"]
    assert shown["account_url"] == entra_kit.azurite.blob_url and shown["tenant_id"] == CUSTOMER_TENANT
    assert "connection_string" not in shown
    sealed = entra_ctx.repo.get(ACCOUNT, iid).destination.sealed_secret
    opened = json.loads(entra_ctx.integrations.secrets.open(sealed))
    assert opened == {"account_url": entra_kit.azurite.blob_url, "tenant_id": CUSTOMER_TENANT}, "nothing secret"
    populate(entra_ctx, clock, range(3))
    clock.set(due_at(3))
    tick_collecting(entra_ctx, [])
    assert_exactly_once(entra_ctx, entra_kit, iid)


def test_a_tenant_that_has_not_consented_is_a_credential_error(entra_ctx, entra_kit):
    answer = call(entra_ctx, "integrations_verify", entra_kit.body(tenant_id=OTHER_TENANT), account=ACCOUNT)
    assert answer.status == 422 and answer.body["error"]["code"] == CredentialError.code, answer.body
    assert (
        APP_ID in answer.body["error"]["message"] and "Storage Blob Data Contributor" in answer.body["error"]["message"]
    )
    assert entra_kit.names() == []


def test_a_token_for_another_audience_is_refused_by_azurite_as_a_credential_error(entra_ctx, entra_kit, oauth_servers):
    entra = oauth_servers[1]
    entra.audience = "https://vault.azure.net"
    try:
        tenant = str(uuid.UUID(int=uuid.uuid4().int))  # a fresh tenant: no token cached for it
        entra.consented.add(tenant)
        answer = call(entra_ctx, "integrations_verify", entra_kit.body(tenant_id=tenant), account=ACCOUNT)
    finally:
        entra.audience = "https://storage.azure.com"
    assert answer.status == 422 and answer.body["error"]["code"] == CredentialError.code, answer.body
    assert "refused the platform's Entra ID token" in answer.body["error"]["message"], answer.body
    assert "AuthenticationFailed" not in answer.body["error"]["message"], "the server's code is matched, never shown"
    assert entra_kit.names() == []


def test_keyless_azure_bodies_are_checked(entra_ctx, ctx, entra_kit):
    plain = entra_kit.body(account_url=entra_kit.azurite.blob_url.replace("https", "http"))
    assert (
        call(entra_ctx, "integrations_verify", plain, account=ACCOUNT).body["error"]["field"]
        == "destination.account_url"
    )
    bad = call(entra_ctx, "integrations_verify", entra_kit.body(tenant_id="contoso"), account=ACCOUNT)
    assert bad.status == 400 and bad.body["error"]["field"] == "destination.tenant_id"
    both = call(
        entra_ctx,
        "integrations_verify",
        entra_kit.body(connection_string="UseDevelopmentStorage=true"),
        account=ACCOUNT,
    )
    assert both.status == 400 and both.body["error"]["field"] == "destination.account_url"
    unconfigured = call(ctx, "integrations_verify", entra_kit.body(), account=ACCOUNT)
    assert unconfigured.status == 400 and unconfigured.body["error"]["field"] == "destination.tenant_id"


def test_a_missing_role_assignment_says_which_role_to_grant_on_which_container():
    """Azurite grants every valid token everything, so the 403 is made here: the words are what matters."""
    from azure.core.exceptions import HttpResponseError

    from exporter.destinations.azure_errors import classify

    refused = HttpResponseError(
        message="This request is not authorized to perform this operation using this permission."
    )
    refused.status_code, refused.error_code = 403, "AuthorizationPermissionMismatch"
    error = classify(refused, "exports")
    assert isinstance(error, CredentialError)
    assert "'exports'" in error.message and "Storage Blob Data Contributor" in error.message
    assert "AuthorizationPermissionMismatch" in error.message
