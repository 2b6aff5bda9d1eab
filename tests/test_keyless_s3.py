"""The platform's identity, and S3 by role: no customer key, the account's external id, moto with IAM enforced.

The refusals come from moto's STS itself (trust policy principal and sts:ExternalId condition) and
from moto's S3 checking the role's policy at each request.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import datetime, timezone

import pytest

from exporter.context import Context
from exporter.destinations.common import DELETE_NOTE
from exporter.destinations.keyless_s3 import REFRESH_BEFORE_SECONDS, SessionCache, assume_role
from exporter.errors import CredentialError
from exporter.identity import ExternalIds, Opening, PlatformIdentity
from exporter.integrations.model import Status
from exporter.storage import IDENTITIES_TABLE
from tests.destination_helpers import create
from tests.export_helpers import ACCOUNT, ACT, H, assert_exactly_once, due_at, populate, tick_collecting
from tests.helpers import call
from tests.keyless_helpers import Platform, S3RoleKit, make_platform, make_role_kit


@pytest.fixture
def platform(moto_s3, tag, monkeypatch) -> Platform:
    return make_platform(moto_s3, tag, monkeypatch)


@pytest.fixture
def kctx(settings, clock, platform) -> Context:
    """The app with the platform's AWS identity configured (the operator's settings)."""
    return Context.create(platform.settings(settings), clock)


def external_id(ctx: Context, account: str = ACCOUNT) -> str:
    answer = call(ctx, "integrations_identity", account=account)
    assert answer.status == 200, answer.body
    return answer.body["aws"]["external_id"]


def role_kit(ctx, moto_s3, platform, tag, actions=("s3:*",)) -> S3RoleKit:
    return make_role_kit(moto_s3, platform, external_id(ctx), tag, list(actions))


# ------------------------------------------------------------------ the platform's identity


def test_the_identity_names_the_platform_and_a_stable_unguessable_external_id(settings, clock):
    configured = Context.create(
        settings_with(
            settings,
            aws_principal_arn="arn:aws:iam::111122223333:role/event-export",
            gcp_service_account="export@platform.iam.gserviceaccount.com",
            azure_tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
            azure_client_id="0b9d6d52-4bd0-4b8e-9a5f-3a2f6c1e8d11",
        ),
        clock,
    )
    first = call(configured, "integrations_identity", account=ACCOUNT)
    assert first.status == 200
    assert first.body == {
        "aws": {
            "principal_arn": "arn:aws:iam::111122223333:role/event-export",
            "external_id": first.body["aws"]["external_id"],
        },
        "gcp": {"service_account": "export@platform.iam.gserviceaccount.com"},
        "azure": {
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client_id": "0b9d6d52-4bd0-4b8e-9a5f-3a2f6c1e8d11",
        },
    }
    ext = first.body["aws"]["external_id"]
    assert len(ext) >= 32 and ext.replace("-", "").replace("_", "").isalnum()
    assert call(configured, "integrations_identity", account=ACCOUNT).body == first.body, "stable"
    other = call(configured, "integrations_identity", account="globex").body["aws"]["external_id"]
    assert other != ext, "each account its own"
    unset = call(Context.create(settings, clock), "integrations_identity", account=ACCOUNT).body
    assert unset["aws"] == {"principal_arn": None, "external_id": ext} and unset["gcp"]["service_account"] is None
    assert call(configured, "integrations_identity", account="Not An Account").status == 400


def test_two_first_asks_at_once_agree(ctx):
    ids = ExternalIds(ctx.storage.table(IDENTITIES_TABLE))
    answers: list[str] = []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait()
        answers.append(ids.of("initech"))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 4 and len(set(answers)) == 1


def settings_with(settings, **changes):
    return dataclasses.replace(settings, **changes)


# ------------------------------------------------------------------ verification and refusals


def test_a_role_that_may_put_but_not_delete_verifies_and_leaves_the_test_file(kctx, moto_s3, platform, tag):
    kit = role_kit(kctx, moto_s3, platform, tag, actions=["s3:PutObject"])
    answer = call(kctx, "integrations_verify", kit.body(), account=ACCOUNT)
    assert answer.status == 200, answer.body
    assert answer.body["ok"] is True and answer.body["note"] == DELETE_NOTE
    assert answer.body["test_file"]["deleted"] is False
    assert kit.names() == [answer.body["test_file"]["name"]]


def test_a_wrong_external_id_is_a_credential_error_saying_what_to_trust(kctx, moto_s3, platform, tag):
    kit = role_kit(kctx, moto_s3, platform, tag)
    ext = external_id(kctx)
    other = kit.another_role(platform.arn, "an-external-id-of-someone-else", f"wrongext-{kit.bucket}")
    answer = call(kctx, "integrations_verify", kit.body(role_arn=other), account=ACCOUNT)
    assert answer.status == 422 and answer.body["error"]["code"] == CredentialError.code
    message = answer.body["error"]["message"]
    assert other in message and ext in message and platform.arn in message and "sts:ExternalId" in message
    assert kit.names() == [], "no test file"
    # Another account of the platform naming this customer's role is refused the same way (confused deputy).
    globex = call(kctx, "integrations_verify", kit.body(), account="globex")
    assert globex.status == 422 and globex.body["error"]["code"] == CredentialError.code


def test_a_trust_policy_for_another_principal_is_a_credential_error(kctx, moto_s3, platform, tag):
    kit = role_kit(kctx, moto_s3, platform, tag)
    other = kit.another_role("arn:aws:iam::123456789012:user/someone-else", external_id(kctx), f"other-{kit.bucket}")
    answer = call(kctx, "integrations_verify", kit.body(role_arn=other), account=ACCOUNT)
    assert answer.status == 422 and answer.body["error"]["code"] == CredentialError.code
    assert other in answer.body["error"]["message"] and platform.arn in answer.body["error"]["message"]
    created = call(kctx, "integrations_create", integration_body_for(kit, role_arn=other), account=ACCOUNT)
    assert created.status == 422 and call(kctx, "integrations_list", account=ACCOUNT).body["integrations"] == []


def integration_body_for(kit: S3RoleKit, **destination):
    from tests.destination_helpers import integration_body

    return integration_body({**kit.body(), **destination})


def test_a_body_gives_a_role_or_a_key_not_both(kctx, moto_s3, platform, tag):
    kit = role_kit(kctx, moto_s3, platform, tag)
    both = {**kit.body(), "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "x" * 40}
    answer = call(kctx, "integrations_verify", both, account=ACCOUNT)
    assert answer.status == 400 and answer.body["error"]["field"] == "destination.role_arn"
    neither = {k: v for k, v in kit.body().items() if k != "role_arn"}
    answer = call(kctx, "integrations_verify", neither, account=ACCOUNT)
    assert answer.status == 400 and answer.body["error"]["field"] == "destination.access_key_id"
    bad = call(kctx, "integrations_verify", {**kit.body(), "role_arn": "arn:aws:iam::1:user/x"}, account=ACCOUNT)
    assert bad.status == 400 and bad.body["error"]["field"] == "destination.role_arn"


# ------------------------------------------------------------------ the stored destination, and the session cache


def test_a_keyless_integration_stores_and_shows_no_secret(kctx, clock, moto_s3, platform, tag):
    kit = role_kit(kctx, moto_s3, platform, tag)
    iid = create(kctx, clock, kit)
    shown = call(kctx, "integrations_show", account=ACCOUNT, id=iid).body["destination"]
    assert shown["role_arn"] == kit.role_arn and "access_key_id" not in shown and "secret_access_key" not in shown
    stored = kctx.repo.get(ACCOUNT, iid).destination
    opened = json.loads(kctx.integrations.secrets.open(stored.sealed_secret))
    assert opened == {
        "region": "us-east-1",
        "access_key_id": None,
        "secret_access_key": None,
        "endpoint_url": moto_s3.url,
        "role_arn": kit.role_arn,
    }, "nothing secret: the role and where the bucket is"


def test_session_credentials_are_reused_until_shortly_before_they_expire(kctx, moto_s3, platform, tag):
    kit = role_kit(kctx, moto_s3, platform, tag)
    asked: list[str] = []
    now = [datetime.now(timezone.utc).timestamp()]

    def counting(opening: Opening, role_arn: str, region: str):
        asked.append(opening.session)
        return assume_role(opening, role_arn, region)

    cache = SessionCache(now=lambda: now[0], assume=counting)
    opening = Opening(ACCOUNT, "3f9c0a1b2c3d", lambda: kit.external_id, PlatformIdentity.from_settings(kctx.settings))
    first = cache.credentials(opening, kit.role_arn, "us-east-1")
    assert cache.credentials(opening, kit.role_arn, "us-east-1") is first and asked == ["3f9c0a1b2c3d"]
    verify = Opening(ACCOUNT, "verify", opening.find_external_id, opening.platform)
    cache.credentials(verify, kit.role_arn, "us-east-1")
    assert asked == ["3f9c0a1b2c3d", "verify"], "each session its own (named in the customer's CloudTrail)"
    now[0] = first.expires_at - REFRESH_BEFORE_SECONDS - 1
    assert cache.credentials(opening, kit.role_arn, "us-east-1") is first
    now[0] += 2
    renewed = cache.credentials(opening, kit.role_arn, "us-east-1")
    assert renewed is not first and renewed.access_key_id != first.access_key_id and len(asked) == 3


# ------------------------------------------------------------------ the role's policy removed mid-stream


def test_the_role_policy_removed_mid_stream_stops_the_integration_and_restored_it_catches_up(
    kctx, clock, moto_s3, platform, tag, monkeypatch
):
    kit = role_kit(kctx, moto_s3, platform, tag)
    iid = create(kctx, clock, kit)
    populate(kctx, clock, range(5), skip={3})
    clock.set(due_at(5))
    real_open = kctx.open_destination
    committed: list[str] = []

    class RemovingAfterTwo:
        """The real destination; after its second file the customer removes the role's policy (for real, in IAM)."""

        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def commit_blocks(self, path, count):
            self.real.commit_blocks(path, count)
            committed.append(path)
            if len(committed) == 2:
                kit.remove_policy()

    monkeypatch.setattr(kctx, "open_destination", lambda *a: RemovingAfterTwo(real_open(*a)))
    results: list = []
    worked = tick_collecting(kctx, results)["worker"]
    assert worked["windows_exported"] == 2 and results[0].stopped == CredentialError.code
    integration = kctx.repo.get(ACCOUNT, iid)
    assert integration.status == Status.CREDENTIAL_ERROR and kit.refusal_words in integration.last_error
    assert integration.last_success_end == ACT + 2 * H
    assert len(kit.names()) == 2

    # The grant back, then the customer resumes it by verifying the role again (the same body).
    monkeypatch.setattr(kctx, "open_destination", real_open)
    refused = call(kctx, "integrations_update", {"destination": kit.credentials_update()}, account=ACCOUNT, id=iid)
    assert refused.status == 422, "still refused while the policy is gone"
    kit.restore_policy()
    updated = call(kctx, "integrations_update", {"destination": kit.credentials_update()}, account=ACCOUNT, id=iid)
    assert updated.status == 200, updated.body
    assert updated.body["status"] == Status.ACTIVE
    clock.advance(minutes=1)
    results.clear()
    tick_collecting(kctx, results)
    assert_exactly_once(kctx, kit, iid)


def test_an_update_switches_between_a_key_and_a_role_and_keeps_no_stale_key(kctx, clock, moto_s3, platform, tag):
    kit = role_kit(kctx, moto_s3, platform, tag)
    key = moto_s3.create_user(f"u-{kit.bucket}", ["s3:*"], kit.bucket)
    keyed = {k: v for k, v in kit.body().items() if k != "role_arn"} | key
    created = call(kctx, "integrations_create", integration_body_for_destination(keyed), account=ACCOUNT)
    assert created.status == 201, created.body
    iid = created.body["id"]
    to_role = call(kctx, "integrations_update", {"destination": {"role_arn": kit.role_arn}}, account=ACCOUNT, id=iid)
    assert to_role.status == 200, to_role.body
    assert (
        to_role.body["destination"]["role_arn"] == kit.role_arn and "access_key_id" not in to_role.body["destination"]
    )
    sealed = kctx.repo.get(ACCOUNT, iid).destination.sealed_secret
    opened = json.loads(kctx.integrations.secrets.open(sealed))
    assert opened["secret_access_key"] is None and opened["region"] == "us-east-1", "the old key is gone"
    back = call(kctx, "integrations_update", {"destination": key}, account=ACCOUNT, id=iid)
    assert back.status == 200 and "role_arn" not in back.body["destination"], back.body


def integration_body_for_destination(destination):
    from tests.destination_helpers import integration_body

    return integration_body(destination)


def test_sts_failures_are_worded_by_the_s3_error_map_without_the_servers_text():
    """What STS says (its code, its message) is matched, never repeated; a bug of ours is not STS's failure."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    from exporter.destinations.s3_errors import RoleNotAssumed, S3Errors
    from exporter.errors import TransientError

    errors = S3Errors("acme-exports", "us-east-1", None)
    role, principal = "arn:aws:iam::123456789012:role/event-export", "arn:aws:iam::210987654321:user/platform"
    for code, status, kind in [
        ("AccessDenied", 403, CredentialError),
        ("SomethingNew", 400, CredentialError),
        ("Throttling", 400, TransientError),
        ("Whatever", 503, TransientError),
    ]:
        answer = {
            "Error": {"Code": code, "Message": "server-said-this"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        error = errors.classify(RoleNotAssumed(ClientError(answer, "AssumeRole"), role, "ext-123", principal))
        assert isinstance(error, kind), (code, error)
        assert (
            code not in error.message and "server-said-this" not in error.message and str(status) not in error.message
        )
        if kind is CredentialError:
            assert role in error.message and "ext-123" in error.message and principal in error.message
    unreachable = RoleNotAssumed(
        EndpointConnectionError(endpoint_url="https://sts.example"), role, "ext-123", principal
    )
    assert isinstance(errors.classify(unreachable), TransientError)
    assert errors.classify(RoleNotAssumed(TypeError("ours"), role, "ext-123", principal)) is None, "a bug passes on"
