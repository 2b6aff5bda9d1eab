"""Verify authentication (docs/architecture.md) against Azurite: every outcome, through verify and create.

A failing verification refuses the create whole: no integration and no slot are stored.
"""

import base64
import time
from datetime import datetime, timezone

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob._generated.models import StorageErrorCode

from exporter.clock import to_unix
from exporter.destinations.azure_blob import parse_connection_string
from exporter.destinations.azure_errors import classify
from exporter.errors import CredentialError, DestinationError, InputError, TransientError
from exporter.local.devstorage import DEV_ACCOUNT, DEV_KEY, free_port
from tests.helpers import T0, call, integration_body

WRONG_KEY = base64.b64encode(b"definitely-not-the-devstoreaccount1-key!" * 2).decode()
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)
CONN_FIELD = "destination.connection_string"


# ------------------------------------------------------------------ helpers


def blob_endpoint(azurite_connection: str) -> str:
    return parse_connection_string(azurite_connection).blob_endpoint  # http://127.0.0.1:<port>/devstoreaccount1


def container_sas(container: str, expiry=FAR_FUTURE, **permissions) -> str:
    return generate_container_sas(
        DEV_ACCOUNT, container, account_key=DEV_KEY, permission=ContainerSasPermissions(**permissions), expiry=expiry
    )


def sas_url(azurite_connection: str, container: str, expiry=FAR_FUTURE, **permissions) -> str:
    return f"{blob_endpoint(azurite_connection)}/{container}?{container_sas(container, expiry, **permissions)}"


def destination(connection_string: str, container: str | None, prefix: str = "insider/") -> dict:
    body = {"type": "azure_blob", "connection_string": connection_string, "prefix": prefix}
    if container is not None:
        body["container"] = container
    return body


def blob_names(container) -> list[str]:
    return sorted(b.name for b in container.list_blobs())


def assert_nothing_stored(ctx, account: str) -> None:
    assert call(ctx, "integrations_list", account=account).body == {"integrations": []}
    table = ctx.storage.table("integrations")
    leftovers = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": account}))
    assert leftovers == [], "a refused create must not leave an integration or a slot behind"


def refused_everywhere(ctx, dest: dict, container: str) -> dict:
    """Verify and create both refuse the destination the same way; nothing is stored. Returns the error."""
    verified = call(ctx, "integrations_verify", dest, account="acme")
    assert verified.body["ok"] is False and verified.body["test_file"] is None, verified.body
    body = integration_body("unused", container)
    body["destination"] = dest
    created = call(ctx, "integrations_create", body, account="acme")
    assert created.status == verified.status, (created.body, verified.body)
    assert created.body["error"]["code"] == verified.body["error"]["code"]
    assert_nothing_stored(ctx, "acme")
    return {"status": verified.status, **verified.body["error"]}


# ------------------------------------------------------------------ outcomes that verify


def test_account_key_connection_string_writes_and_deletes_the_test_file(ctx, customer_container, azurite_connection):
    name = customer_container.container_name
    answer = call(ctx, "integrations_verify", destination(azurite_connection, name), account="acme")

    assert answer.status == 200, answer.body
    assert answer.body["ok"] is True
    test_file = answer.body["test_file"]
    assert test_file["name"].startswith("insider/"), "the test file goes under the prefix"
    assert str(to_unix(T0)) in test_file["name"], "the test file is named with the injected clock's time"
    assert test_file["deleted"] is True
    assert "note" not in answer.body
    assert blob_names(customer_container) == [], "the test file was deleted"


def test_verify_accepts_an_integration_body_too(ctx, customer_body):
    answer = call(ctx, "integrations_verify", customer_body, account="acme")
    assert answer.status == 200 and answer.body["ok"] is True, answer.body


def test_create_verifies_and_answers_with_the_verification(ctx, customer_body, customer_container):
    created = call(ctx, "integrations_create", customer_body, account="acme")
    assert created.status == 201, created.body
    assert created.body["verification"]["ok"] is True
    assert created.body["verification"]["test_file"]["deleted"] is True
    assert blob_names(customer_container) == []
    assert [i["id"] for i in call(ctx, "integrations_list", account="acme").body["integrations"]] == [
        created.body["id"]
    ]


def test_sas_url_without_delete_permission_verifies_and_says_the_test_file_stays(
    ctx, customer_container, azurite_connection
):
    name = customer_container.container_name
    url = sas_url(azurite_connection, name, write=True, create=True)  # no delete
    assert url.startswith("http://127.0.0.1:") and f"/{DEV_ACCOUNT}/{name}?" in url

    answer = call(ctx, "integrations_verify", destination(url, None), account="acme")

    assert answer.status == 200, answer.body
    assert answer.body["ok"] is True
    test_file = answer.body["test_file"]
    assert test_file["deleted"] is False
    assert test_file["name"].startswith("insider/")
    assert blob_names(customer_container) == [test_file["name"]], "the file the SAS could not delete is still there"
    assert "stays" in answer.body["note"] and "delete" in answer.body["note"]


def test_create_with_a_sas_url_without_delete_permission_is_stored_with_the_note(
    ctx, customer_container, azurite_connection
):
    name = customer_container.container_name
    body = integration_body("x", name)
    body["destination"] = destination(sas_url(azurite_connection, name, write=True, create=True), name)
    created = call(ctx, "integrations_create", body, account="acme")
    assert created.status == 201, created.body
    assert created.body["verification"]["test_file"]["deleted"] is False
    assert "note" in created.body["verification"]
    assert created.body["destination"]["container"] == name
    assert created.body["destination"]["connection_string"].endswith("SharedAccessSignature=***")


def test_sas_url_whose_container_differs_from_the_body_is_refused(ctx, customer_container, azurite_connection):
    url = sas_url(azurite_connection, customer_container.container_name, write=True, create=True)
    error = refused_everywhere(ctx, destination(url, "some-other-container"), "some-other-container")
    assert (error["status"], error["field"]) == (400, "destination.container")


def test_sas_connection_string_verifies(ctx, customer_container, azurite_connection):
    name = customer_container.container_name
    sas = container_sas(name, write=True, create=True, delete=True)
    conn = f"BlobEndpoint={blob_endpoint(azurite_connection)};SharedAccessSignature={sas}"

    answer = call(ctx, "integrations_verify", destination(conn, name), account="acme")

    assert answer.status == 200, answer.body
    assert answer.body["test_file"]["deleted"] is True
    assert blob_names(customer_container) == []


# ------------------------------------------------------------------ outcomes that refuse


def test_wrong_account_key_is_a_credential_error_naming_the_key(ctx, customer_container, azurite_connection):
    wrong = azurite_connection.replace(DEV_KEY, WRONG_KEY)
    assert wrong != azurite_connection
    error = refused_everywhere(
        ctx, destination(wrong, customer_container.container_name), customer_container.container_name
    )
    assert (error["status"], error["code"]) == (422, "credential_error")
    assert "account key" in error["message"]
    assert "AuthorizationFailure" not in error["message"] and "StorageErrorCode" not in error["message"]
    assert WRONG_KEY not in error["message"] and DEV_KEY not in error["message"]
    assert blob_names(customer_container) == []


def test_expired_sas_is_a_credential_error(ctx, customer_container, azurite_connection):
    name = customer_container.container_name
    url = sas_url(azurite_connection, name, expiry=LONG_AGO, write=True, create=True, delete=True)
    error = refused_everywhere(ctx, destination(url, None), name)
    assert (error["status"], error["code"]) == (422, "credential_error")
    assert "expired" in error["message"]
    assert blob_names(customer_container) == []


def test_read_only_sas_is_a_credential_error_about_write_permission(ctx, customer_container, azurite_connection):
    name = customer_container.container_name
    url = sas_url(azurite_connection, name, read=True, list=True)
    error = refused_everywhere(ctx, destination(url, None), name)
    assert (error["status"], error["code"]) == (422, "credential_error")
    assert "write permission" in error["message"]
    assert blob_names(customer_container) == []


def test_missing_container_is_a_destination_error_naming_it(ctx, azurite_connection, tag):
    missing = f"nosuch-{tag}"
    error = refused_everywhere(ctx, destination(azurite_connection, missing), missing)
    assert (error["status"], error["code"]) == (422, "destination_error")
    assert repr(missing) in error["message"] and "does not exist" in error["message"]


@pytest.mark.parametrize(
    "connection_string, reason",
    [
        ("this is not a connection string", "Key=Value"),
        (
            "DefaultEndpointsProtocol=https;AccountName=acct;EndpointSuffix=core.windows.net",
            "neither an AccountKey nor a SharedAccessSignature",
        ),
        ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=not*base64!", "Base64"),
        ("AccountKey=" + DEV_KEY, "AccountName"),
        ("https://acct.blob.core.windows.net/exports", "without a SAS token"),
    ],
)
def test_malformed_connection_string_is_a_400_naming_the_field(ctx, customer_container, connection_string, reason):
    error = refused_everywhere(
        ctx, destination(connection_string, customer_container.container_name), customer_container.container_name
    )
    assert (error["status"], error["code"], error["field"]) == (400, "invalid_input", CONN_FIELD)
    assert reason in error["message"]
    assert DEV_KEY not in error["message"]


def test_unreachable_endpoint_fails_fast_saying_it_cannot_be_reached(ctx, customer_container):
    closed = free_port()  # nothing listens there
    conn = f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:{closed}/{DEV_ACCOUNT}"
    started = time.monotonic()
    error = refused_everywhere(
        ctx, destination(conn, customer_container.container_name), customer_container.container_name
    )
    elapsed = time.monotonic() - started
    assert (error["status"], error["code"]) == (422, "destination_error")
    assert "could not reach" in error["message"] and str(closed) in error["message"]
    assert DEV_KEY not in error["message"]
    assert elapsed < 10, f"verify and create against a closed port took {elapsed:.1f}s; verification must fail fast"


@pytest.mark.parametrize("prefix", [".", "..", "../x", "a/./b", "a/..", "a//b", "./a", "a\x7fb", "a\u0085b", "x\ud800"])
def test_a_prefix_with_dot_or_empty_segments_is_a_400_on_the_prefix_before_any_write(
    ctx, customer_container, azurite_connection, prefix
):
    """'.' used to verify as "wrong account key" (the SDK's URL lost the segment, so the signature failed), '../x' as "(400 OutOfRangeInput)"."""
    dest = destination(azurite_connection, customer_container.container_name, prefix=prefix)
    error = refused_everywhere(ctx, dest, customer_container.container_name)
    assert (error["status"], error["code"], error["field"]) == (400, "invalid_input", "destination.prefix"), error
    assert blob_names(customer_container) == []


@pytest.mark.parametrize(
    "prefix, under", [("/a/b/", "a/b/"), ("a/", "a/"), ("/", ""), ("", ""), (".hidden/x.y", ".hidden/x.y/")]
)
def test_a_leading_or_trailing_slash_is_fine_the_prefix_is_joined_with_one_slash(
    ctx, customer_container, azurite_connection, prefix, under
):
    answer = call(
        ctx,
        "integrations_verify",
        destination(azurite_connection, customer_container.container_name, prefix=prefix),
        account="acme",
    )
    assert answer.body["ok"] is True, answer.body
    name = answer.body["test_file"]["name"]
    assert name.startswith(under + ".export-verify-") and "//" not in name


def test_an_unknown_storage_account_is_named_as_such(ctx, customer_container, azurite_connection):
    """Azurite (like any explicit endpoint) answers 404 ResourceNotFound for an account it does not have."""
    endpoint = blob_endpoint(azurite_connection).rsplit("/", 1)[0]
    conn = f"DefaultEndpointsProtocol=http;AccountName=nosuch;AccountKey={DEV_KEY};BlobEndpoint={endpoint}/nosuch"
    error = refused_everywhere(
        ctx, destination(conn, customer_container.container_name), customer_container.container_name
    )
    assert (error["status"], error["code"]) == (422, "destination_error")
    assert error["message"] == "the storage account was not found: check the account name or endpoint"


# ------------------------------------------------------------------ parse_connection_string (pure)


def test_parse_account_key_with_endpoint_suffix():
    creds = parse_connection_string(
        f"DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey={WRONG_KEY};EndpointSuffix=core.chinacloudapi.cn"
    )
    assert creds.blob_endpoint == "https://contoso.blob.core.chinacloudapi.cn"
    assert (creds.account_name, creds.account_key, creds.sas, creds.container, creds.auth) == (
        "contoso",
        WRONG_KEY,
        None,
        None,
        "account_key",
    )
    assert creds.masked == "BlobEndpoint=https://contoso.blob.core.chinacloudapi.cn;AccountName=contoso;AccountKey=***"


def test_parse_account_key_defaults_to_https_and_the_public_cloud():
    creds = parse_connection_string(f"AccountName=contoso;AccountKey={WRONG_KEY}")
    assert creds.blob_endpoint == "https://contoso.blob.core.windows.net"


def test_parse_explicit_endpoints_as_azurite_uses_them(azurite_connection):
    creds = parse_connection_string(azurite_connection)
    assert creds.blob_endpoint.startswith("http://127.0.0.1:") and creds.blob_endpoint.endswith(f"/{DEV_ACCOUNT}")
    assert (creds.account_name, creds.account_key, creds.sas) == (DEV_ACCOUNT, DEV_KEY, None)
    assert DEV_KEY not in creds.masked and "AccountKey=***" in creds.masked


@pytest.mark.parametrize(
    "text", ["UseDevelopmentStorage=true", "usedevelopmentstorage=TRUE;DevelopmentStorageProxyUri=http://127.0.0.1"]
)
def test_development_storage_is_not_a_customer_destination(text):
    with pytest.raises(InputError) as refused:
        parse_connection_string(text)
    assert refused.value.field == "destination.connection_string"
    assert refused.value.reason == "development storage is not a customer destination; use explicit endpoints"


def test_verify_refuses_development_storage_naming_the_field(ctx, customer_container):
    body = {
        "type": "azure_blob",
        "connection_string": "UseDevelopmentStorage=true",
        "container": customer_container.container_name,
    }
    answer = call(ctx, "integrations_verify", body, account="acme")
    assert answer.status == 400 and answer.body["error"]["field"] == "destination.connection_string"
    assert list(customer_container.list_blobs()) == []


def test_parse_sas_connection_string():
    sas = "sv=2024-08-04&sr=c&sp=cw&se=2100-01-01T00%3A00%3A00Z&sig=c2lnbmF0dXJl%2Bvalue%3D"
    creds = parse_connection_string(f"BlobEndpoint=https://contoso.blob.core.windows.net/;SharedAccessSignature=?{sas}")
    assert (creds.blob_endpoint, creds.account_name, creds.account_key, creds.sas, creds.auth) == (
        "https://contoso.blob.core.windows.net",
        "contoso",
        None,
        sas,
        "sas",
    )
    assert creds.masked.endswith("SharedAccessSignature=***") and "sig=" not in creds.masked


def test_parse_sas_container_url_on_azure_and_on_azurite():
    query = "sv=2024-08-04&sr=c&sp=cw&sig=abc%2Bdef%3D"
    azure = parse_connection_string(f"https://contoso.blob.core.windows.net/exports?{query}")
    assert (azure.blob_endpoint, azure.account_name, azure.container, azure.sas) == (
        "https://contoso.blob.core.windows.net",
        "contoso",
        "exports",
        query,
    )
    local = parse_connection_string(f"http://127.0.0.1:10000/{DEV_ACCOUNT}/exports?{query}")
    assert (local.blob_endpoint, local.account_name, local.container, local.sas) == (
        f"http://127.0.0.1:10000/{DEV_ACCOUNT}",
        DEV_ACCOUNT,
        "exports",
        query,
    )
    assert "sig" not in local.masked


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        42,
        "novalue",
        "=value;AccountKey=abcd",
        "AccountName=a;AccountKey=abc",  # not Base64 (length)
        "BlobEndpoint=ftp://host/acct;SharedAccessSignature=sv=1&sig=x",
        "https://contoso.blob.core.windows.net/?sv=1&sig=x",  # no container
        "https://contoso.blob.core.windows.net/exports?sv=1",  # no sig
    ],
)
def test_parse_refuses_malformed_input_naming_the_field(text):
    with pytest.raises(InputError) as refused:
        parse_connection_string(text)
    assert refused.value.field == CONN_FIELD


def test_parse_error_messages_never_echo_the_key():
    with pytest.raises(InputError) as refused:
        parse_connection_string("AccountName=a;AccountKey=" + DEV_KEY[:-3] + "!!!")
    assert DEV_KEY[:20] not in refused.value.message


# ------------------------------------------------------------------ classify (pure)


class FakeResponse:
    def __init__(self, status: int, code: str | None = None):
        self.status_code = status
        self.reason = "Reason"
        self.headers = {"x-ms-error-code": code} if code else {}
        self.request = None

    def text(self, encoding=None):
        # What SDK error text can carry: a URL with a SAS and a connection string.
        return f"url=https://acct.blob.core.windows.net/c?sv=1&sig=SECRETSIG AccountKey={DEV_KEY}"


def http_error(status: int, code: str | None, *, as_attribute: bool = True) -> HttpResponseError:
    error = HttpResponseError(message=f"failed AccountKey={DEV_KEY} sig=SECRETSIG", response=FakeResponse(status, code))
    error.error_code = (
        (StorageErrorCode(code) if code in StorageErrorCode._value2member_map_ else code) if as_attribute else None
    )
    return error


@pytest.mark.parametrize("status, code", [(403, "AuthorizationFailure"), (403, "AuthenticationFailed"), (401, None)])
def test_classify_refused_credentials(status, code):
    error = classify(http_error(status, code), "exports")
    assert isinstance(error, CredentialError)
    assert "wrong account key" in error.message and "SAS" in error.message
    assert "(" not in error.message, "the server's code or status is not repeated"


@pytest.mark.parametrize("as_attribute", [True, False])
def test_classify_permission_mismatch_is_about_permission(as_attribute):
    error = classify(http_error(403, "AuthorizationPermissionMismatch", as_attribute=as_attribute), "exports")
    assert isinstance(error, CredentialError)
    assert "permission" in error.message and "AuthorizationPermissionMismatch" in error.message


def test_classify_missing_container():
    error = classify(ResourceNotFoundError(message="gone", response=FakeResponse(404, "ContainerNotFound")), "exports")
    assert isinstance(error, DestinationError) and "'exports'" in error.message and "does not exist" in error.message


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_classify_server_errors_timeouts_and_throttling_are_transient(status):
    error = classify(http_error(status, "ServerBusy"), "exports")
    assert isinstance(error, TransientError) and str(status) not in error.message and "ServerBusy" not in error.message


@pytest.mark.parametrize("exc", [ServiceRequestError("connect refused"), ServiceResponseError("connection reset")])
def test_classify_connection_failures_are_transient(exc):
    error = classify(exc, "exports")
    assert isinstance(error, TransientError) and "could not reach" in error.message


def test_classify_other_4xx_is_a_destination_error():
    assert isinstance(classify(http_error(409, "ContainerBeingDeleted"), "exports"), DestinationError)


@pytest.mark.parametrize("code", ["ResourceNotFound", "AccountNotFound"])
def test_classify_an_unknown_account(code):
    error = classify(http_error(404, code), "exports")
    assert isinstance(error, DestinationError)
    assert error.message == "the storage account was not found: check the account name or endpoint"


@pytest.mark.parametrize(
    "status, code",
    [
        (400, "OutOfRangeInput"),
        (400, "InvalidUri"),
        (400, "InvalidResourceName"),
        (400, "InvalidQueryParameterValue"),
        (400, None),
        (409, "ContainerBeingDeleted"),
        (409, "SomethingNew"),
        (412, "ConditionNotMet"),
        (404, "BlobNotFound"),
    ],
)
def test_classify_every_other_refusal_is_a_sentence_not_a_bare_code(status, code):
    message = classify(http_error(status, code), "exports").message
    assert str(status) not in message, message
    assert message.startswith("the ") and ("; " in message or ": " in message), message
    assert not code or code not in message, "a code from the server is matched, never repeated"


@pytest.mark.parametrize("status, code", [(400, "InvalidQueryParameterValue"), (409, "SomethingNew"), (418, None)])
def test_at_verification_an_unknown_refusal_is_the_one_unreachable_sentence(status, code):
    unreachable = classify(ServiceRequestError("refused"), "exports", verifying=True, endpoint="https://x.example")
    answer = classify(http_error(status, code), "exports", verifying=True, endpoint="https://x.example")
    assert answer.to_json() == unreachable.to_json()


def test_classify_leaves_a_bug_of_ours_unmapped():
    assert classify(TypeError("a bug"), "exports") is None


def test_classified_messages_never_contain_the_key_or_the_sas():
    cases = [
        http_error(s, c)
        for s, c in [
            (403, "AuthorizationFailure"),
            (403, "AuthorizationPermissionMismatch"),
            (404, "ContainerNotFound"),
            (500, None),
            (409, "Other"),
            (400, None),
        ]
    ]
    cases += [ServiceRequestError(f"AccountKey={DEV_KEY}")]
    for exc in cases:
        message = classify(exc, "exports").message
        assert DEV_KEY not in message and "SECRETSIG" not in message and "AccountKey" not in message, message
