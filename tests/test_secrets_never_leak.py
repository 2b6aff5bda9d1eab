"""Connection strings, keys and SAS signatures (and the S3 and GCS credentials) appear in no answer, log,
table, queue message or run record, through a full scenario on Azurite, moto and the GCS emulator
(docs/invariants.md: secrets)."""

import base64
import dataclasses
import json
import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.queue import QueueClient

from exporter import logs
from exporter.context import Context
from exporter.destinations.azure_blob import parse_connection_string
from exporter.integrations.model import Status, parse_destination
from exporter.local.devstorage import DEV_ACCOUNT, DEV_KEY
from exporter.local.host import tick
from exporter.runs import EXPORTED, FAILED, POISONED
from tests.destination_helpers import integration_body as cloud_body
from tests.destination_helpers import make_kit
from tests.helpers import T0, call, integration_body

WRONG_KEY = base64.b64encode(b"QQ-distinctive-wrong-key-for-the-secret-scan-QQ").decode()


def _sas_url(azurite_connection: str, container: str) -> tuple[str, str]:
    sas = generate_container_sas(
        DEV_ACCOUNT,
        container,
        account_key=DEV_KEY,
        permission=ContainerSasPermissions(write=True, create=True),
        expiry=datetime(2100, 1, 1, tzinfo=timezone.utc),
    )
    return f"{parse_connection_string(azurite_connection).blob_endpoint}/{container}?{sas}", sas


def _events(*timestamps: str) -> dict:
    return {
        "users": [
            {
                "user_id": f"u{i}",
                "attributes": {"email": f"u{i}@example.com"},
                "events": [
                    {"event_name": "purchase", "timestamp": ts, "event_params": {"price": i, "currency": "EUR"}}
                ],
            }
            for i, ts in enumerate(timestamps)
        ]
    }


class _RawLines(logging.Handler):
    """The app's own records as logged, before any redacting filter has touched them."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines += [record.getMessage(), logs.JsonFormatter().format(record)]


@pytest.fixture
def app_log_lines():
    handler, app_logger = _RawLines(), logging.getLogger("exporter")
    app_logger.addHandler(handler)
    yield handler.lines
    app_logger.removeHandler(handler)


def test_no_secret_anywhere_through_a_full_scenario(
    ctx, clock, settings, customer_container, azurite_connection, caplog, monkeypatch, app_log_lines
):
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "urllib3", "exporter"):
        caplog.set_level(logging.DEBUG, logger=name)
    # As in the Functions host: the app's redacting filter on the handlers (here caplog's). Third-party
    # records (urllib3 logs each request URL, SAS signature included, at DEBUG) are checked as the
    # handlers see them; the app's own records are also checked raw, before redaction (app_log_lines).
    logs.install_redaction()
    name = customer_container.container_name
    wrong_conn = azurite_connection.replace(DEV_KEY, WRONG_KEY)
    url, sas = _sas_url(azurite_connection, name)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    sig_in_url = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    expired_url = url.replace("se=2100", "se=2000")

    answers: list[str] = []
    sent: list[str] = []
    real_send = QueueClient.send_message

    def recording_send(self, content, *args, **kwargs):
        sent.append(str(content))
        return real_send(self, content, *args, **kwargs)

    monkeypatch.setattr(QueueClient, "send_message", recording_send)

    def api(op, body=None, expect=None, **params):
        answer = call(ctx, op, body, **params)
        answers.append(json.dumps(answer.body))
        if expect is not None:
            assert answer.status == expect, (op, answer.body)
        return answer.body

    # Two integrations: an account-key connection string and a SAS URL (no delete permission).
    key_id = api(
        "integrations_create",
        integration_body(
            azurite_connection,
            name,
            destination={
                "type": "azure_blob",
                "connection_string": azurite_connection,
                "container": name,
                "prefix": "key/",
            },
        ),
        201,
        account="acme",
    )["id"]
    sas_id = api(
        "integrations_create",
        integration_body(
            url, name, destination={"type": "azure_blob", "connection_string": url, "container": name, "prefix": "sas/"}
        ),
        201,
        account="acme",
    )["id"]
    api("integrations_verify", {"type": "azure_blob", "connection_string": url, "prefix": "sas/"}, 200, account="acme")

    clock.set(T0 + timedelta(minutes=5))
    api("ucd_upsert", _events("2026-11-28T10:04:00Z", "2026-11-25T08:00:00Z"), 200, account="acme")
    clock.set(T0 + timedelta(hours=1, minutes=5))
    api("ucd_upsert", _events("2026-11-28T11:04:00Z"), 200, account="acme")
    for hour in (1, 2):
        clock.set(T0 + timedelta(hours=hour, minutes=2))
        assert tick(ctx)["worker"]["windows_exported"] == 2

    # Refused credentials: verify, create and update with a wrong key or an expired SAS.
    api(
        "integrations_verify",
        {"type": "azure_blob", "connection_string": wrong_conn, "container": name},
        422,
        account="acme",
    )
    api("integrations_verify", {"type": "azure_blob", "connection_string": expired_url}, 422, account="acme")
    api("integrations_create", integration_body(wrong_conn, name), 422, account="acme")
    api("integrations_update", {"destination": {"connection_string": wrong_conn}}, 422, account="acme", id=key_id)
    api(
        "integrations_create",
        integration_body(azurite_connection + "AccountKey=not base64!", name),
        400,
        account="acme",
    )

    # A job that keeps failing lands in the poison queue (a host allowing no redelivery).
    poison_ctx = Context.create(dataclasses.replace(settings, max_dequeue_count=0), clock)
    clock.set(T0 + timedelta(hours=3, minutes=2))
    assert tick(poison_ctx)["worker"]["poisoned"] == 2
    poisoned_runs = ctx.runs.list("acme", key_id) + ctx.runs.list("acme", sas_id)
    assert POISONED in {r.status for r in poisoned_runs}
    poisoned_queue = [m.content for m in ctx.storage.queue(settings.poison_queue_name).peek_messages(max_messages=32)]
    assert len(poisoned_queue) == 2

    # The customer's key stops working while exporting: the worker stops the integration.
    stored = ctx.repo.get("acme", key_id)
    ctx.repo.replace(
        stored.with_changes(
            destination=dataclasses.replace(stored.destination, sealed_secret=ctx.integrations.secrets.seal(wrong_conn))
        )
    )
    clock.set(T0 + timedelta(hours=4, minutes=2))
    tick(ctx)

    # An unexpected failure whose text carries secrets: the 500 answer and its log line must not.
    monkeypatch.setattr(
        ctx.integrations,
        "list",
        lambda account: (_ for _ in ()).throw(RuntimeError(f"boom {azurite_connection} {url} {wrong_conn}")),
    )
    api("integrations_list", None, 500, account="acme")
    monkeypatch.undo()
    monkeypatch.setattr(QueueClient, "send_message", recording_send)

    for iid in (key_id, sas_id):
        api("integrations_show", None, 200, account="acme", id=iid)
        api("integrations_runs", None, 200, account="acme", id=iid)
    api("integrations_list", None, 200, account="acme")
    api("ucd_catalog", None, 200, account="acme")

    # The scenario did what it claims.
    key_state = ctx.repo.get("acme", key_id)
    assert key_state.status == Status.CREDENTIAL_ERROR and "refused the credentials" in key_state.last_error
    runs = ctx.runs.list("acme", key_id) + ctx.runs.list("acme", sas_id)
    assert {r.status for r in runs} >= {EXPORTED, FAILED}
    assert any(b.name.startswith("sas/") for b in customer_container.list_blobs())

    # Gather every place a secret could land.
    haystacks: dict[str, list[str]] = {"answers": answers, "sent queue messages": sent}
    records = caplog.records
    formatter, plain = logs.JsonFormatter(), logging.Formatter()
    haystacks["log messages"] = [r.getMessage() for r in records]
    haystacks["json log lines"] = [formatter.format(r) for r in records]
    haystacks["log exceptions"] = [plain.formatException(r.exc_info) for r in records if r.exc_info]
    haystacks["app log records, unredacted"] = app_log_lines
    tables = [t.name for t in ctx.storage.table_service.list_tables() if t.name.startswith(settings.table_prefix)]
    assert len(tables) >= 6
    entities = []
    for table in tables:
        for entity in ctx.storage.table_service.get_table_client(table).list_entities():
            entities.append(json.dumps({**dict(entity), "_meta": entity.metadata}, default=str))
    haystacks["table entities"] = entities
    queued = []
    for queue_name in (settings.queue_name, settings.poison_queue_name):
        queued += [m.content for m in ctx.storage.queue(queue_name).peek_messages(max_messages=32)]
    haystacks["queued messages"] = queued + poisoned_queue
    haystacks["run records"] = [json.dumps(dataclasses.asdict(r)) for r in runs + poisoned_runs]

    assert records and sent and queued and entities and app_log_lines
    assert any("integration stopped" in line for line in app_log_lines), "the worker's credential stop was logged"
    assert any("unexpected failure" in m for m in haystacks["log messages"]), "the 500's log line was captured"
    secrets = {
        "dev account key": DEV_KEY,
        "dev key (partial)": DEV_KEY[:16],
        "dev key (url-quoted)": quote(DEV_KEY, safe=""),
        "wrong key": WRONG_KEY,
        "wrong key (partial)": WRONG_KEY[:16],
        "account-key connection string": azurite_connection,
        "wrong-key connection string": wrong_conn,
        "SAS URL": url,
        "SAS token": sas,
        "sig": sig,
        "sig as in the URL": sig_in_url,
    }
    for where, texts in haystacks.items():
        for text in texts:
            for what, secret in secrets.items():
                assert secret not in text, f"{what} found in {where}: {text[:300]}"

    # At rest the secret is sealed, not plaintext.
    integrations = [e for e in ctx.storage.table("integrations").list_entities() if e.get("kind") == "integration"]
    assert len(integrations) == 2
    plaintexts = {azurite_connection, url, wrong_conn}
    for entity in integrations:
        assert (
            entity["secret"] not in plaintexts
            and "AccountKey" not in entity["secret"]
            and "sig=" not in entity["secret"]
        )
        assert ctx.integrations.secrets.open(entity["secret"]) in plaintexts


# ------------------------------------------------------------------ S3 and GCS (docs/invariants.md, I7, for the other two types)


def test_no_s3_or_gcs_secret_anywhere_through_a_full_scenario(
    ctx, clock, settings, request, tag, caplog, monkeypatch, app_log_lines
):
    """The S3 secret access key and the GCS private key (and the access tokens it earns, and the raw key
    id) appear in no answer, log, table, queue message or run record: verify, create, refusals, exports,
    a poisoned job, a credential stop mid-export and an unexpected failure whose text holds them."""
    s3, gcs = make_kit(request, "s3", tag), make_kit(request, "gcs", tag)
    for name in ("azure", "urllib3", "exporter", "botocore", "boto3", "s3transfer", "google"):
        caplog.set_level(logging.DEBUG, logger=name)
    logs.install_redaction()
    answers, sent = [], []
    real_send = QueueClient.send_message

    def recording_send(self, content, *args, **kwargs):
        sent.append(str(content))
        return real_send(self, content, *args, **kwargs)

    monkeypatch.setattr(QueueClient, "send_message", recording_send)

    def api(op, body=None, expect=None, **params):
        answer = call(ctx, op, body, **params)
        answers.append(json.dumps(answer.body))
        if expect is not None:
            assert answer.status == expect, (op, answer.body)
        return answer.body

    ids = {}
    for kit in (s3, gcs):
        api("integrations_verify", kit.body(), 200, account="acme")
        ids[kit.kind] = api(
            "integrations_create",
            cloud_body(kit.body(), events=[{"name": "purchase", "params": ["price"]}]),
            201,
            account="acme",
        )["id"]
        api("integrations_verify", kit.refused_body(), 422, account="acme")
        api("integrations_create", cloud_body(kit.refused_body()), 422, account="acme")
        update = {k: v for k, v in kit.refused_body().items() if k not in ("type", "bucket", "prefix")}
        api("integrations_update", {"destination": update}, 422, account="acme", id=ids[kit.kind])
    broken_key = {**gcs.key, "private_key": gcs.key["private_key"][:200]}
    api("integrations_verify", gcs.body(key=broken_key), 400, account="acme")

    clock.set(T0 + timedelta(minutes=5))
    api("ucd_upsert", _events("2026-11-28T10:04:00Z", "2026-11-25T08:00:00Z"), 200, account="acme")
    for hour in (1, 2):
        clock.set(T0 + timedelta(hours=hour, minutes=2))
        assert tick(ctx)["worker"]["windows_exported"] == 2
    poison_ctx = Context.create(dataclasses.replace(settings, max_dequeue_count=0), clock)
    clock.set(T0 + timedelta(hours=3, minutes=2))
    assert tick(poison_ctx)["worker"]["poisoned"] == 2
    poisoned = [r for iid in ids.values() for r in ctx.runs.list("acme", iid) if r.status == POISONED]
    assert len(poisoned) == 2

    # The credentials stop working while exporting: the worker stops both integrations.
    for kit in (s3, gcs):
        refused = parse_destination(kit.refused_body(), partial=False).complete().secret
        stored = ctx.repo.get("acme", ids[kit.kind])
        ctx.repo.replace(
            stored.with_changes(
                destination=dataclasses.replace(
                    stored.destination, sealed_secret=ctx.integrations.secrets.seal(refused)
                )
            )
        )
    clock.set(T0 + timedelta(hours=4, minutes=2))
    tick(ctx)

    monkeypatch.setattr(
        ctx.integrations,
        "list",
        lambda account: (_ for _ in ()).throw(RuntimeError(f"boom {json.dumps(s3.body())} {gcs.body()!r}")),
    )
    api("integrations_list", None, 500, account="acme")
    monkeypatch.undo()
    for iid in ids.values():
        api("integrations_show", None, 200, account="acme", id=iid)
        api("integrations_runs", None, 200, account="acme", id=iid)
    api("integrations_list", None, 200, account="acme")

    runs = [r for iid in ids.values() for r in ctx.runs.list("acme", iid)] + poisoned
    for iid in ids.values():
        assert ctx.repo.get("acme", iid).status == Status.CREDENTIAL_ERROR
    assert {r.status for r in runs} >= {EXPORTED, FAILED, POISONED}
    assert s3.names() and gcs.names()

    haystacks: dict[str, list[str]] = {"answers": answers, "sent queue messages": sent}
    formatter, plain = logs.JsonFormatter(), logging.Formatter()
    haystacks["log messages"] = [r.getMessage() for r in caplog.records]
    haystacks["json log lines"] = [formatter.format(r) for r in caplog.records]
    haystacks["log exceptions"] = [plain.formatException(r.exc_info) for r in caplog.records if r.exc_info]
    haystacks["app log records, unredacted"] = app_log_lines
    entities = []
    for table in [t.name for t in ctx.storage.table_service.list_tables() if t.name.startswith(settings.table_prefix)]:
        for entity in ctx.storage.table_service.get_table_client(table).list_entities():
            entities.append(json.dumps({**dict(entity), "_meta": entity.metadata}, default=str))
    haystacks["table entities"] = entities
    haystacks["queued messages"] = [
        m.content
        for q in (settings.queue_name, settings.poison_queue_name)
        for m in ctx.storage.queue(q).peek_messages(max_messages=32)
    ]
    haystacks["run records"] = [json.dumps(dataclasses.asdict(r)) for r in runs]
    assert sent and entities and app_log_lines
    assert any("botocore" in r.name for r in caplog.records) and any(
        r.name.startswith("google") or "urllib3" in r.name for r in caplog.records
    )

    secrets = {**s3.secrets(), **gcs.secrets(), "access key id": s3.key["access_key_id"]}
    secrets.update({f"access token {i}": token for i, token in enumerate(gcs.tokens.granted)})
    assert gcs.tokens.granted, "the GCS exports ran the OAuth flow"
    for where, texts in haystacks.items():
        for text in texts:
            for what, secret in secrets.items():
                assert secret not in text, f"{what} found in {where}: {text[:300]}"
    for entity in [e for e in ctx.storage.table("integrations").list_entities() if e.get("kind") == "integration"]:
        opened = ctx.integrations.secrets.open(entity["secret"])
        assert "secret_access_key" in opened or "private_key" in opened, "sealed, and opens to the credentials"
