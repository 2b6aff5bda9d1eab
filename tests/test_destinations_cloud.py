"""S3 (moto with IAM enforcement) and GCS (gcp-storage-emulator, real service-account OAuth on loopback):
bodies, verification outcomes in customer words, masked answers, updates, the shared limit, and the
upload mechanics (S3 multipart parts by block index, GCS resumable chunks in order and 256 KiB aligned,
nothing visible before the commit, aborts, resumption after faults). Where a server cannot produce a
status (a GCS 403, an S3 wrong-region answer, 5xx), the fault proxy sits between client and server.
"""

from __future__ import annotations

import json
import os
import re
import threading
import tracemalloc
from datetime import timedelta

import pytest

from exporter.clock import iso
from exporter.destinations.common import mask_email, mask_middle
from exporter.destinations.gcs import CHUNK
from exporter.destinations.s3 import part_number
from exporter.destinations.s3_errors import S3Errors
from exporter.errors import CredentialError, InternalError, TransientError
from exporter.export.naming import join_prefix
from exporter.export.runner import export_window
from exporter.local.cloudservers import service_account_key
from exporter.local.devstorage import free_port
from exporter.local.faultproxy import FaultProxy, Rule
from exporter.windows import Window
from tests.destination_helpers import destination_from_body, integration_body
from tests.export_helpers import ACCOUNT
from tests.helpers import T0, call

MiB = 1024 * 1024


@pytest.fixture
def proxied():
    """A kit's server behind a fault proxy holding `rules`: the proxy, and the kit's body through it.

    Every proxy is stopped after the test."""
    started = []

    def start(kit, *rules: Rule) -> tuple[FaultProxy, dict]:
        proxy = FaultProxy(kit.server_url).start()
        started.append(proxy)
        for rule in rules:
            proxy.add(rule)
        return proxy, {**kit.body(), "endpoint_url": proxy.url}

    yield start
    for proxy in started:
        proxy.stop()


def verify(ctx, body):
    return call(ctx, "integrations_verify", body, account=ACCOUNT)


def refused(ctx, body, status: int, code: str, *words: str) -> dict:
    """Verify and create both refuse the body the same way, in these words; nothing is stored."""
    answer = verify(ctx, body)
    assert answer.status == status and answer.body["error"]["code"] == code, answer.body
    assert answer.body["ok"] is False and answer.body["test_file"] is None
    for word in words:
        assert word in answer.body["error"]["message"], answer.body
    created = call(ctx, "integrations_create", integration_body(body), account=ACCOUNT)
    assert (created.status, created.body["error"]["code"]) == (status, code)
    assert call(ctx, "integrations_list", account=ACCOUNT).body == {"integrations": []}
    return answer.body["error"]


# ------------------------------------------------------------------ bodies (400 naming the field)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"region": None}, "destination.region"),
        ({"bucket": "Not_A_Bucket"}, "destination.bucket"),
        ({"region": "EU West"}, "destination.region"),
        ({"access_key_id": ""}, "destination.access_key_id"),
        ({"secret_access_key": "has a space"}, "destination.secret_access_key"),
        ({"endpoint_url": "ftp://example.com"}, "destination.endpoint_url"),
        ({"endpoint_url": "https://user:pw@example.com"}, "destination.endpoint_url"),
        ({"prefix": "a\\b"}, "destination.prefix"),
        ({"connection_string": "x"}, "destination.connection_string"),
        ({"container": "x"}, "destination.container"),
    ],
)
def test_a_malformed_s3_body_is_refused_naming_the_field(ctx, change, field):
    body = {
        "type": "s3",
        "bucket": "acme-exports",
        "prefix": "p/",
        "region": "eu-west-1",
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    answer = verify(ctx, body)
    assert answer.status == 400 and answer.body["error"]["field"] == field, answer.body
    assert "wJalrXUtnFEMI" not in json.dumps(answer.body)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"service_account_key": None}, "destination.service_account_key"),
        ({"service_account_key": "not an object"}, "destination.service_account_key"),
        ({"service_account_key": {"type": "authorized_user"}}, "destination.service_account_key.client_email"),
        ({"key.type": "authorized_user"}, "destination.service_account_key.type"),
        (
            {"key.private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"},
            "destination.service_account_key.private_key",
        ),
        ({"key.token_uri": "not a url"}, "destination.service_account_key.token_uri"),
        ({"key.client_email": "nobody"}, "destination.service_account_key.client_email"),
        ({"bucket": "x"}, "destination.bucket"),
        ({"region": "eu-west-1"}, "destination.region"),
    ],
)
def test_a_malformed_gcs_body_is_refused_naming_the_field(ctx, change, field):
    key = service_account_key("https://oauth2.googleapis.com/token")
    body = {"type": "gcs", "bucket": "acme-exports", "prefix": "p/", "service_account_key": key}
    for name, value in change.items():
        if name.startswith("key."):
            key[name[4:]] = value
        elif value is None:
            body.pop(name)
        else:
            body[name] = value
    answer = verify(ctx, body)
    assert answer.status == 400 and answer.body["error"]["field"] == field, answer.body
    assert key["private_key"][40:100] not in json.dumps(answer.body)


def test_s3_part_numbers_follow_the_runner_block_indexes():
    assert [part_number(i) for i in (0, 1, 9, 10, 1234, 9_999)] == [1, 2, 10, 11, 1235, 10_000]
    for bad in (-1, 10_000, True, "1"):
        with pytest.raises(InternalError):
            part_number(bad)


def test_masks():
    assert mask_middle("AKIAIOSFODNN7EXAMPLE") == "AKIA************MPLE"
    assert mask_middle("short") == "*****"
    assert mask_email("exporter@proj.iam.gserviceaccount.com") == "ex******@proj.iam.gserviceaccount.com"


# ------------------------------------------------------------------ S3 verification


def test_s3_verify_writes_and_deletes_the_test_file(ctx, s3):
    answer = verify(ctx, s3.body())
    assert answer.status == 200, answer.body
    assert answer.body["ok"] is True and answer.body["test_file"]["deleted"] is True
    assert answer.body["test_file"]["name"].startswith("insider/.export-verify-")
    assert "note" not in answer.body
    assert s3.names() == []


def test_s3_without_delete_permission_verifies_and_leaves_the_test_file_with_a_note(ctx, s3):
    writer = s3.server.create_user(f"w-{s3.bucket}", ["s3:PutObject", "s3:AbortMultipartUpload"], s3.bucket)
    answer = verify(ctx, {**s3.body(), **writer})
    assert answer.status == 200, answer.body
    assert answer.body["test_file"]["deleted"] is False
    assert "stays" in answer.body["note"] and "delete" in answer.body["note"]
    assert s3.names() == [answer.body["test_file"]["name"]], "the policy check refused the delete for real"


def test_s3_without_write_permission_is_refused_as_a_credential_error(ctx, s3):
    reader = s3.server.create_user(f"r-{s3.bucket}", ["s3:GetObject", "s3:ListBucket"], s3.bucket)
    refused(ctx, {**s3.body(), **reader}, 422, "credential_error", "may not write", "s3:PutObject", s3.bucket)


def test_s3_unknown_key_id_and_wrong_secret_are_credential_errors_in_customer_words(ctx, s3):
    refused(
        ctx,
        {**s3.body(), "access_key_id": "AKIAUNKNOWNKEY000000"},
        422,
        "credential_error",
        "does not know the access key id",
    )
    error = refused(ctx, s3.refused_body(), 422, "credential_error", "secret access key does not match")
    assert s3.wrong_secret not in json.dumps(error)


def test_s3_missing_bucket_is_a_destination_error(ctx, s3):
    admin = {"access_key_id": s3.server.access_key_id, "secret_access_key": s3.server.secret_access_key}
    refused(
        ctx,
        {**s3.body(), **admin, "bucket": "no-such-bucket-here"},
        422,
        "destination_error",
        "'no-such-bucket-here' does not exist",
    )


def test_s3_unreachable_endpoint_is_a_destination_error_at_verification(ctx, s3):
    refused(
        ctx,
        {**s3.body(), "endpoint_url": f"http://127.0.0.1:{free_port()}"},
        422,
        "destination_error",
        "could not reach",
    )


def test_s3_wrong_region_is_a_destination_error_naming_the_right_region(ctx, s3, proxied):
    proxy, body = proxied(s3)
    wrong_region = (
        400,
        {"Content-Type": "application/xml"},
        (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AuthorizationHeaderMalformed</Code>"
            b"<Message>the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region></Error>"
        ),
    )
    # Once: boto3 re-signs for the region S3 names and the write goes through.
    proxy.add(Rule("respond", method="PUT", answer=wrong_region, times=1))
    assert verify(ctx, body).status == 200
    # Every time (an endpoint that cannot serve the bucket's region): a clear refusal. The region the answer
    # names is repeated only when AWS itself answers (below); this endpoint is not AWS's.
    proxy.add(Rule("respond", method="PUT", answer=wrong_region, times=10))
    error = refused(ctx, body, 422, "destination_error", "is not in region 'us-east-1'", "check the region")
    assert "eu-west-1" not in error["message"]


def test_s3_wrong_region_named_by_aws_itself_is_repeated():
    from botocore.exceptions import ClientError

    answer = {
        "Error": {"Code": "AuthorizationHeaderMalformed", "Region": "eu-west-1"},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    error = S3Errors("acme-exports", "us-east-1", None).classify(ClientError(answer, "PutObject"), "write")
    assert error is not None
    assert "is in region 'eu-west-1', not 'us-east-1'" in error.message and "set region to 'eu-west-1'" in error.message


# ------------------------------------------------------------------ GCS verification


def test_gcs_verify_runs_the_real_oauth_flow_and_deletes_the_test_file(ctx, gcs):
    asked = len(gcs.tokens.granted)
    answer = verify(ctx, gcs.body())
    assert answer.status == 200, answer.body
    assert answer.body["test_file"]["deleted"] is True and gcs.names() == []
    assert len(gcs.tokens.granted) > asked, "a token was obtained with a JWT signed by the key"


def test_gcs_refused_key_is_a_credential_error(ctx, gcs):
    error = refused(ctx, gcs.refused_body(), 422, "credential_error", "refused the service account key")
    assert "invalid_grant" not in error["message"] and "JWT" not in error["message"], "no SDK text"


def test_gcs_without_write_permission_is_a_credential_error(ctx, gcs, proxied):
    _, body = proxied(gcs, Rule("403", method="POST", path=r"^/upload/", times=10))
    refused(ctx, body, 422, "credential_error", "may not write", "storage.objects.create")


def test_gcs_without_delete_permission_verifies_and_leaves_the_test_file_with_a_note(ctx, gcs, proxied):
    _, body = proxied(gcs, Rule("403", method="DELETE", times=10))
    answer = verify(ctx, body)
    assert answer.status == 200, answer.body
    assert answer.body["test_file"]["deleted"] is False and "stays" in answer.body["note"]
    assert gcs.names() == [answer.body["test_file"]["name"]]


def test_gcs_missing_bucket_and_unreachable_endpoints_are_destination_errors(ctx, gcs, token_endpoint):
    refused(ctx, {**gcs.body(), "bucket": "no-such-bucket-here"}, 422, "destination_error", "does not exist")
    refused(
        ctx,
        {**gcs.body(), "endpoint_url": f"http://127.0.0.1:{free_port()}"},
        422,
        "destination_error",
        "could not reach",
    )
    unreachable_token = {**gcs.key, "token_uri": f"http://127.0.0.1:{free_port()}/token"}
    refused(ctx, gcs.body(key=unreachable_token), 422, "destination_error", "token_uri")


@pytest.mark.parametrize(
    "kind, rule",
    [("s3", dict(method="PUT")), ("gcs", dict(method="POST", path=r"^/upload/"))],
    ids=["s3 throttling", "gcs server errors"],
)
def test_server_errors_at_verification_are_transient(ctx, request, proxied, kind, rule):
    _, body = proxied(request.getfixturevalue(kind), Rule("503", times=100, **rule))
    answer = verify(ctx, body)
    assert answer.status == 503 and answer.body["error"]["code"] == TransientError.code, answer.body


# ------------------------------------------------------------------ answers, updates, the limit


def test_answers_show_masked_credentials_and_storage_holds_them_sealed(ctx, s3, gcs):
    s3_created = call(ctx, "integrations_create", integration_body(s3.body()), account=ACCOUNT)
    gcs_created = call(ctx, "integrations_create", integration_body(gcs.body()), account=ACCOUNT)
    assert s3_created.status == 201 and gcs_created.status == 201, (s3_created.body, gcs_created.body)
    assert s3_created.body["destination"] == {
        "type": "s3",
        "bucket": s3.bucket,
        "prefix": "insider/",
        "region": "us-east-1",
        "access_key_id": mask_middle(s3.key["access_key_id"]),
        "endpoint_url": s3.server.url,
    }
    assert gcs_created.body["destination"] == {
        "type": "gcs",
        "bucket": gcs.bucket,
        "prefix": "insider/",
        "client_email": mask_email(gcs.key["client_email"]),
        "endpoint_url": gcs.emulator.url,
    }
    listed = json.dumps(call(ctx, "integrations_list", account=ACCOUNT).body)
    everything = json.dumps([s3_created.body, gcs_created.body]) + listed
    for secret in [*s3.secrets().values(), *gcs.secrets().values(), s3.key["access_key_id"], gcs.key["client_email"]]:
        assert secret not in everything
    stored = [e for e in ctx.storage.table("integrations").list_entities() if e.get("kind") == "integration"]
    assert len(stored) == 2
    for entity in stored:
        raw = json.dumps(dict(entity))
        assert s3.key["secret_access_key"] not in raw and "PRIVATE KEY" not in raw
        opened = json.loads(ctx.integrations.secrets.open(entity["secret"]))
        assert (
            opened.get("secret_access_key") == s3.key["secret_access_key"] or opened["service_account_key"] == gcs.key
        )


def test_an_update_verifies_new_credentials_and_never_changes_the_type(
    ctx, s3, gcs, customer_container, azurite_connection
):
    iid = call(ctx, "integrations_create", integration_body(s3.body()), account=ACCOUNT).body["id"]

    def update(destination):
        return call(ctx, "integrations_update", {"destination": destination}, account=ACCOUNT, id=iid)

    before = call(ctx, "integrations_show", account=ACCOUNT, id=iid).body
    bad = update({"secret_access_key": "definitely-wrong-secret"})
    assert bad.status == 422 and "does not match" in bad.body["error"]["message"]
    assert call(ctx, "integrations_show", account=ACCOUNT, id=iid).body["etag"] == before["etag"], "nothing stored"

    other = s3.server.create_user(f"o-{s3.bucket}", ["s3:*"], s3.bucket)
    good = update(other)
    assert good.status == 200, good.body
    assert good.body["destination"]["access_key_id"] == mask_middle(other["access_key_id"])
    assert good.body["verification"]["ok"] is True
    moved = update({"prefix": "elsewhere/"})
    assert moved.status == 200 and moved.body["destination"]["prefix"] == "elsewhere/"
    assert moved.body["verification"]["test_file"]["name"].startswith("elsewhere/")
    stored = ctx.repo.get(ACCOUNT, iid)
    assert (
        json.loads(ctx.integrations.secrets.open(stored.destination.sealed_secret))["access_key_id"]
        == other["access_key_id"]
    )

    for destination, field in [
        ({**gcs.body()}, "destination.type"),
        (
            {
                "type": "azure_blob",
                "connection_string": azurite_connection,
                "container": customer_container.container_name,
            },
            "destination.type",
        ),
        ({"connection_string": azurite_connection}, "destination.connection_string"),
        ({"service_account_key": gcs.key}, "destination.service_account_key"),
    ]:
        answer = update(destination)
        assert (answer.status, answer.body["error"]["field"]) == (400, field), answer.body

    azure_id = call(
        ctx,
        "integrations_create",
        integration_body(
            {
                "type": "azure_blob",
                "connection_string": azurite_connection,
                "container": customer_container.container_name,
            }
        ),
        account=ACCOUNT,
    ).body["id"]
    answer = call(ctx, "integrations_update", {"destination": {"bucket": s3.bucket}}, account=ACCOUNT, id=azure_id)
    assert (answer.status, answer.body["error"]["field"]) == (400, "destination.bucket")
    answer = call(ctx, "integrations_update", {"destination": s3.body()}, account=ACCOUNT, id=azure_id)
    assert (answer.status, answer.body["error"]["field"]) == (400, "destination.type")


def test_the_limit_of_five_counts_every_type(ctx, s3, gcs, customer_container, azurite_connection):
    azure = {
        "type": "azure_blob",
        "connection_string": azurite_connection,
        "container": customer_container.container_name,
    }
    for destination in (azure, s3.body("a/"), gcs.body("b/"), s3.body("c/"), gcs.body("d/")):
        assert call(ctx, "integrations_create", integration_body(destination), account=ACCOUNT).status == 201
    for destination in (s3.body("e/"), gcs.body("f/"), azure):
        sixth = call(ctx, "integrations_create", integration_body(destination), account=ACCOUNT)
        assert sixth.status == 409 and sixth.body["error"]["code"] == "limit_reached", sixth.body


# ------------------------------------------------------------------ S3 uploads


def blocks(sizes: list[int]) -> list[bytes]:
    """Distinct, recognizable blocks of these sizes."""
    return [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]


def stage_all(destination, path: str, data: list[bytes], order: list[int]) -> list[BaseException]:
    """Stage the blocks from one thread each, started in `order`; return what they raised."""
    errors: list[BaseException] = []

    def stage(i: int) -> None:
        try:
            destination.stage_block(path, i, data[i])
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = []
    for i in order:
        thread = threading.Thread(target=stage, args=(i,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a block never finished staging"
    return errors


def test_s3_parts_follow_block_indexes_and_nothing_is_visible_before_the_commit(s3):
    destination = destination_from_body(s3.body())
    path = join_prefix(destination.prefix, "file.csv")
    data = blocks([5 * MiB, 5 * MiB, 123])
    assert stage_all(destination, path, data, order=[2, 0, 1]) == []
    assert s3.names() == [], "parts are not an object"
    assert s3.pending_uploads() == [path]
    destination.commit_blocks(path, 3)
    assert s3.read(path) == b"".join(data)
    assert s3.pending_uploads() == []


def test_s3_a_failed_part_aborts_the_upload_and_later_calls_raise_the_same_error(s3, proxied):
    proxy, body = proxied(s3)
    destination = destination_from_body(body)
    path = join_prefix(destination.prefix, "file.csv")
    destination.stage_block(path, 0, b"x" * (5 * MiB))
    proxy.add(Rule("403", method="PUT", path=r"partNumber=2", times=10))
    with pytest.raises(CredentialError) as refused_part:
        destination.stage_block(path, 1, b"y")
    assert "may not write" in refused_part.value.message
    assert s3.pending_uploads() == [], "the upload was aborted"
    with pytest.raises(CredentialError):
        destination.commit_blocks(path, 2)
    assert s3.names() == []


def test_s3_transient_faults_on_parts_are_retried_inside_the_attempt(s3, proxied):
    proxy, body = proxied(s3)
    destination = destination_from_body(body)
    path = join_prefix(destination.prefix, "file.csv")
    proxy.add(Rule("503", method="PUT", path=r"partNumber=1", times=1))
    proxy.add(Rule("reset_after", method="PUT", path=r"partNumber=2", times=1))
    data = blocks([5 * MiB, 10])
    assert stage_all(destination, path, data, order=[0, 1]) == []
    destination.commit_blocks(path, 2)
    assert s3.read(path) == b"".join(data)
    assert proxy.injected["503"] == 1 and proxy.injected["reset_after"] == 1


def test_s3_an_abandoned_export_aborts_its_upload(s3):
    destination = destination_from_body(s3.body())
    path = join_prefix(destination.prefix, "file.csv")
    destination.stage_block(path, 0, b"x" * (5 * MiB))
    assert s3.pending_uploads() == [path]
    destination.abandon_blocks(path)
    assert s3.pending_uploads() == [] and s3.names() == []


# ------------------------------------------------------------------ GCS uploads


def recording(proxy: FaultProxy) -> list[tuple[str, str]]:
    """(method, Content-Range) of every request to a resumable session, without injecting anything."""
    seen: list[tuple[str, str]] = []

    def record(method, path, headers):
        if "upload_id=" in path:
            seen.append((method, headers.get("Content-Range", "")))
        return False

    proxy.add(Rule("slow", when=record, times=10**9))
    return seen


def assert_chunks_in_order_and_aligned(seen: list[tuple[str, str]], total: int) -> None:
    offset = 0
    chunks = [r for _m, r in seen if re.fullmatch(r"bytes \d+-\d+/(\d+|\*)", r)]
    for content_range in chunks:
        start, end, of = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range).groups()
        assert int(start) == offset, f"chunk {content_range} is not the next one (at {offset})"
        offset = int(end) + 1
        if of == "*":
            assert (int(end) + 1 - int(start)) % CHUNK == 0, (
                f"{content_range}: a non-final chunk not a multiple of 256 KiB"
            )
        else:
            assert int(of) == total
    final = [r for _m, r in seen if r.endswith(f"/{total}")]
    assert final, "the last chunk names the total size"
    assert offset == total or final[-1] == f"bytes */{total}"


def test_gcs_blocks_staged_out_of_order_are_sent_in_order_as_aligned_chunks(gcs, proxied):
    proxy, body = proxied(gcs)
    seen = recording(proxy)
    destination = destination_from_body(body)
    path = join_prefix(destination.prefix, "file.csv")
    data = blocks([300 * 1024, 700 * 1024, CHUNK, 5, 1024 * 1024 + 17])  # most not multiples of 256 KiB
    assert stage_all(destination, path, data, order=[4, 3, 2, 1, 0]) == []
    assert gcs.names() == [], "nothing is visible before the commit"
    destination.commit_blocks(path, len(data))
    assert gcs.read(path) == b"".join(data)
    assert_chunks_in_order_and_aligned(seen, sum(map(len, data)))


def test_gcs_an_aligned_file_is_finalized_with_an_empty_last_request(gcs, proxied):
    proxy, body = proxied(gcs)
    seen = recording(proxy)
    destination = destination_from_body(body)
    path = join_prefix(destination.prefix, "file.csv")
    data = blocks([CHUNK, 2 * CHUNK])
    assert stage_all(destination, path, data, order=[0, 1]) == []
    destination.commit_blocks(path, 2)
    assert gcs.read(path) == b"".join(data)
    assert seen[-1] == ("PUT", f"bytes */{3 * CHUNK}")


@pytest.mark.parametrize("kind", ["reset_before", "reset_after", "503"])
def test_gcs_a_chunk_interrupted_by_a_fault_resumes_where_gcs_stopped(gcs, proxied, kind):
    proxy, body = proxied(gcs)
    seen = recording(proxy)
    destination = destination_from_body(body)
    path = join_prefix(destination.prefix, "file.csv")
    proxy.rules.insert(
        0,
        Rule(
            kind,
            method="PUT",
            path="upload_id=",
            times=1,
            when=lambda m, p, h: h.get("Content-Range", "").startswith(f"bytes {CHUNK}-"),
        ),
    )
    data = blocks([CHUNK, CHUNK + 10])
    assert stage_all(destination, path, data, order=[1, 0]) == []
    destination.commit_blocks(path, 2)
    assert gcs.read(path) == b"".join(data)
    assert proxy.injected[kind] == 1
    assert ("PUT", "bytes */*") in seen, "after the fault the client asked GCS how much it kept"


def test_gcs_a_refused_chunk_fails_every_waiting_block_with_the_same_error(gcs, proxied):
    proxy, body = proxied(gcs)
    destination = destination_from_body(body)
    path = join_prefix(destination.prefix, "file.csv")
    proxy.add(Rule("403", method="PUT", path="upload_id=", times=10))
    errors = stage_all(destination, path, blocks([CHUNK, CHUNK, CHUNK]), order=[2, 1, 0])
    assert len(errors) == 3 and all(isinstance(e, CredentialError) for e in errors), errors
    with pytest.raises(CredentialError):
        destination.commit_blocks(path, 3)
    assert gcs.names() == []


def test_gcs_a_block_goes_to_the_socket_uncopied_and_its_buffer_is_free_again(gcs):
    """Only the carry (< 256 KiB) is copied: a 4 MiB block staged after an unaligned one allocates far less
    than itself, and the encoder can write into both blocks' buffers again once they are staged."""
    destination = destination_from_body(gcs.body())
    path = join_prefix(destination.prefix, "file.csv")
    first, second = bytearray(os.urandom(CHUNK + 1000)), bytearray(os.urandom(16 * CHUNK))
    destination.stage_block(path, 0, first)  # opens the session, leaves a carry of 1,000 bytes
    tracemalloc.start()
    try:
        destination.stage_block(path, 1, second)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(second) // 4, f"staging a {len(second):,}-byte block allocated {peak:,} bytes"
    sent = bytes(first) + bytes(second)
    first.extend(b"resized"), second.extend(b"resized")  # BufferError if a view of either were left
    destination.commit_blocks(path, 2)
    assert gcs.read(path) == sent


def test_gcs_an_abandoned_export_releases_waiting_blocks(gcs):
    destination = destination_from_body(gcs.body())
    path = join_prefix(destination.prefix, "file.csv")
    errors: list[BaseException] = []
    waiting = threading.Thread(
        target=lambda: errors.extend(stage_all(destination, path, blocks([CHUNK]) * 2, order=[1]))
    )
    waiting.start()
    destination._session(path)  # the session exists; block 1 waits for block 0, which never comes
    destination.abandon_blocks(path)
    waiting.join(30)
    assert not waiting.is_alive() and len(errors) == 1 and isinstance(errors[0], TransientError)
    assert gcs.names() == []


# ------------------------------------------------------------------ the same file everywhere


def test_the_same_window_is_the_same_name_and_bytes_in_azure_s3_and_gcs(
    ctx, clock, s3, gcs, customer_container, azurite_connection
):
    """Several blocks (not 256 KiB multiples) through each destination's real upload path."""
    clock.set(T0)
    azure = {
        "type": "azure_blob",
        "connection_string": azurite_connection,
        "container": customer_container.container_name,
        "prefix": "insider/",
    }
    created = call(
        ctx,
        "integrations_create",
        integration_body(azure, events=[{"name": "purchase", "params": ["blob", "n"]}]),
        account=ACCOUNT,
    )
    assert created.status == 201, created.body
    clock.set(T0 + timedelta(minutes=5))
    users = [
        {
            "user_id": f"u{i}",
            "events": [
                {
                    "event_name": "purchase",
                    "timestamp": iso(T0 + timedelta(seconds=i)),
                    "event_params": {"blob": f"{i:06d}" + 'é,"x"\n' * 700, "n": i},
                }
            ],
        }
        for i in range(2000)
    ]
    for part in range(0, len(users), 500):  # within the request size limit
        stored = call(ctx, "ucd_upsert", {"users": users[part : part + 500]}, account=ACCOUNT)
        assert stored.body.get("stored_events") == 500, stored.body
    integration = ctx.repo.get(ACCOUNT, created.body["id"])
    window = Window(integration.activated_at, integration.activated_at + timedelta(hours=1))
    block_bytes = 5 * MiB + 17  # S3's minimum part size, and not a multiple of 256 KiB
    kits = {"azure_blob": None, "s3": s3, "gcs": gcs}
    results = {}
    for kind, kit in kits.items():
        destination = destination_from_body(azure if kit is None else kit.body("insider/"))
        result = export_window(
            ctx.ucd, ACCOUNT, integration.id, integration.selection, window, destination, block_bytes=block_bytes
        )
        data = customer_container.download_blob(result.path).readall() if kit is None else kit.read(result.path)
        results[kind] = (result.path, data)
    paths = {path for path, _data in results.values()}
    assert len(paths) == 1 and paths.pop().startswith(f"insider/{ACCOUNT}_events_{integration.id}_")
    sizes = {len(data) for _path, data in results.values()}
    assert len(sizes) == 1 and sizes.pop() > 2 * block_bytes, "the file spans several blocks"
    assert results["s3"][1] == results["azure_blob"][1] == results["gcs"][1]
    assert s3.pending_uploads() == []
