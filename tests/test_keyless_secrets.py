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
from tests.keyless_helpers import make_platform, make_role_kit
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
