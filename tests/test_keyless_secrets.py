"""Keyless integrations leak nothing: the platform's own AWS key and the session credentials STS hands
out appear in no answer, log line, table entity, queue message or run record, and the stored
destination of a keyless integration holds no secret at all (docs/invariants.md: secrets)."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta

from exporter import logs
from exporter.context import Context
from exporter.destinations import keyless_s3
from exporter.integrations.model import Status
from exporter.local.host import tick
from tests.destination_helpers import integration_body
from tests.helpers import T0
from tests.keyless_helpers import make_platform, make_role_kit, trust_certificate
from tests.test_secrets_never_leak import Witness, _events, app_log_lines  # noqa: F401 - the fixture


def test_no_secret_anywhere_with_keyless_integrations(
    settings,
    clock,
    moto_s3,
    tag,
    monkeypatch,
    caplog,
    app_log_lines,  # noqa: F811 - the imported fixture
):
    platform = make_platform(moto_s3, tag, monkeypatch)
    ctx = Context.create(platform.settings(settings), clock)
    external_id = ctx.identity("acme")["aws"]["external_id"]
    kit = make_role_kit(moto_s3, platform, external_id, tag, ["s3:*"])
    refused_role = kit.another_role("arn:aws:iam::123456789012:user/nobody", external_id, f"refused-{kit.bucket}")
    handed_out: list[keyless_s3.SessionCredentials] = []
    real_assume = keyless_s3.assume_role

    def recording(opening, role_arn, region):
        handed_out.append(real_assume(opening, role_arn, region))
        return handed_out[-1]

    monkeypatch.setattr(keyless_s3.SESSIONS, "assume", recording)
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "urllib3", "exporter", "botocore", "boto3"):
        caplog.set_level(logging.DEBUG, logger=name)
    logs.install_redaction()
    witness = Witness(ctx, ctx.settings, caplog, app_log_lines, monkeypatch)
    api = witness.api

    api("integrations_identity", None, 200, account="acme")
    api("integrations_verify", kit.body(), 200, account="acme")
    iid = api("integrations_create", integration_body(kit.body()), 201, account="acme")["id"]
    api("integrations_verify", kit.body(role_arn=refused_role), 422, account="acme")
    api("integrations_create", integration_body(kit.body(role_arn=refused_role)), 422, account="acme")
    api("integrations_update", {"destination": {"role_arn": refused_role}}, 422, account="acme", id=iid)
    clock.set(T0 + timedelta(minutes=5))
    api("ucd_upsert", _events("2026-11-28T10:04:00Z"), 200, account="acme")
    clock.set(T0 + timedelta(hours=1, minutes=2))
    assert tick(ctx)["worker"]["windows_exported"] == 1
    poison_ctx = Context.create(dataclasses.replace(ctx.settings, max_dequeue_count=0), clock)
    clock.set(T0 + timedelta(hours=2, minutes=2))
    assert tick(poison_ctx)["worker"]["poisoned"] == 1  # a message in the poison queue, scanned too
    kit.remove_policy()  # the grant withdrawn: the next export is refused and the integration stops
    clock.set(T0 + timedelta(hours=3, minutes=2))
    tick(ctx)
    assert ctx.repo.get("acme", iid).status == Status.CREDENTIAL_ERROR
    api("integrations_show", None, 200, account="acme", id=iid)
    api("integrations_runs", None, 200, account="acme", id=iid)
    api("integrations_list", None, 200, account="acme")

    assert handed_out, "the exports assumed the role"
    secrets = {
        **kit.secrets(),
        **{f"session secret {i}": c.secret_access_key for i, c in enumerate(handed_out)},
        **{f"session token {i}": c.session_token[:60] for i, c in enumerate(handed_out)},
    }
    witness.assert_nowhere(secrets, ctx.runs.list("acme", iid))
    stored = ctx.repo.get("acme", iid).destination
    opened = json.loads(ctx.integrations.secrets.open(stored.sealed_secret))
    assert opened["access_key_id"] is None and opened["secret_access_key"] is None
    assert set(opened) == {"region", "access_key_id", "secret_access_key", "endpoint_url", "role_arn"}


def test_no_token_anywhere_with_keyless_gcs_and_azure(
    settings,
    clock,
    gcs_emulator,
    tag,
    tmp_path,
    monkeypatch,
    caplog,
    app_log_lines,  # noqa: F811
):
    """The tokens of the keyless flows (the managed identity's assertion, Entra's storage tokens, Google's
    federated and impersonated tokens) appear nowhere, and the stored destinations hold nothing secret."""
    from azure.storage.blob import BlobServiceClient

    from exporter.local.devstorage import DEV_ACCOUNT, DEV_KEY
    from exporter.local.entra import EntraStandIn, self_signed, start_azurite_oauth
    from tests.destination_helpers import new_bucket_name
    from tests.keyless_helpers import google_platform
    from tests.test_keyless_azure import APP_ID, CUSTOMER_TENANT, OTHER_TENANT

    cert, key = self_signed(tmp_path)
    azurite = start_azurite_oauth(cert, key)
    entra = EntraStandIn(APP_ID, consented={CUSTOMER_TENANT}).start(cert, key)
    federation, configured = google_platform(tmp_path, monkeypatch, settings)
    try:
        trust_certificate(monkeypatch, cert)
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{entra.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", entra.identity_header)
        configured = dataclasses.replace(configured, azure_client_id=APP_ID, azure_authority_host=entra.url)
        ctx = Context.create(configured, clock)
        bucket = new_bucket_name(tag)
        gcs_emulator.client().create_bucket(bucket)
        connection = (
            f"DefaultEndpointsProtocol=https;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={azurite.blob_url};"
        )
        container = BlobServiceClient.from_connection_string(connection, connection_verify=str(cert)).create_container(
            new_bucket_name(tag)
        )
        gcs_body = {"type": "gcs", "bucket": bucket, "prefix": "p/", "endpoint_url": gcs_emulator.url}
        azure_body = {
            "type": "azure_blob",
            "account_url": azurite.blob_url,
            "container": container.container_name,
            "prefix": "p/",
            "tenant_id": CUSTOMER_TENANT,
        }
        caplog.set_level(logging.DEBUG)
        for name in ("azure", "urllib3", "exporter", "google", "msal"):
            caplog.set_level(logging.DEBUG, logger=name)
        logs.install_redaction()
        witness = Witness(ctx, ctx.settings, caplog, app_log_lines, monkeypatch)
        ids = []
        for body in (gcs_body, azure_body):
            witness.api("integrations_verify", body, 200, account="acme")
            ids.append(witness.api("integrations_create", integration_body(body), 201, account="acme")["id"])
        witness.api("integrations_verify", {**azure_body, "tenant_id": OTHER_TENANT}, 422, account="acme")
        clock.set(T0 + timedelta(minutes=5))
        witness.api("ucd_upsert", _events("2026-11-28T10:04:00Z"), 200, account="acme")
        clock.set(T0 + timedelta(hours=1, minutes=2))
        assert tick(ctx)["worker"]["windows_exported"] == 2
        poison_ctx = Context.create(dataclasses.replace(ctx.settings, max_dequeue_count=0), clock)
        clock.set(T0 + timedelta(hours=2, minutes=2))
        assert tick(poison_ctx)["worker"]["poisoned"] == 2
        for iid in ids:
            witness.api("integrations_show", None, 200, account="acme", id=iid)
        tokens = [*entra.assertions, *(t for _, t in entra.issued), *federation.exchanged]
        tokens += [t for _, t in federation.impersonated]
        assert entra.issued and federation.exchanged
        runs = [r for iid in ids for r in ctx.runs.list("acme", iid)]
        witness.assert_nowhere({f"token {i}": t for i, t in enumerate(tokens)}, runs)
        opened = [
            json.loads(ctx.integrations.secrets.open(ctx.repo.get("acme", i).destination.sealed_secret)) for i in ids
        ]
        assert opened == [
            {"service_account_key": None, "endpoint_url": gcs_emulator.url, "impersonate": None},
            {"account_url": azurite.blob_url, "tenant_id": CUSTOMER_TENANT},
        ]
    finally:
        federation.stop()
        entra.stop()
        azurite.stop()
