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
from exporter.integrations.bodies import parse_destination
from exporter.integrations.model import Status
from exporter.local.devstorage import DEV_ACCOUNT, DEV_KEY
from exporter.local.host import tick
from exporter.runs import RunRecord, RunStatus
from tests.destination_helpers import integration_body as cloud_body
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


def swap_secret(ctx, iid: str, secret: str) -> None:
    """The stored destination secret replaced behind the API's back: the customer's key stopped working."""
    stored = ctx.repo.get("acme", iid)
    sealed = ctx.integrations.secrets.seal(secret)
    ctx.repo.replace(stored.with_changes(destination=dataclasses.replace(stored.destination, sealed_secret=sealed)))


class Witness:
    """Every place a secret could land during a scenario: the API's answers, queue messages as sent, log
    records as the handlers see them (and the app's own, raw), table entities, queued messages, run records."""

    def __init__(self, ctx, settings, caplog, app_log_lines, monkeypatch):
        self.ctx, self.settings, self.caplog, self.app_log_lines = ctx, settings, caplog, app_log_lines
        self.answers: list[str] = []
        self.sent: list[str] = []
        real_send = QueueClient.send_message

        def recording_send(queue, content, *args, **kwargs):
            self.sent.append(str(content))
            return real_send(queue, content, *args, **kwargs)

        monkeypatch.setattr(QueueClient, "send_message", recording_send)

    def api(self, op, body=None, expect=None, **params) -> dict:
        """Call an operation, keep its answer, and check its status."""
        answer = call(self.ctx, op, body, **params)
        self.answers.append(json.dumps(answer.body))
        if expect is not None:
            assert answer.status == expect, (op, answer.body)
        return answer.body

    def haystacks(self, runs: list[RunRecord]) -> dict[str, list[str]]:
        """Each place, as the texts found there; every place holds something."""
        records, storage = self.caplog.records, self.ctx.storage
        formatter, plain = logs.JsonFormatter(), logging.Formatter()
        tables = [t.name for t in storage.table_service.list_tables() if t.name.startswith(self.settings.table_prefix)]
        assert len(tables) >= 6
        entities = [
            json.dumps({**dict(entity), "_meta": entity.metadata}, default=str)
            for table in tables
            for entity in storage.table_service.get_table_client(table).list_entities()
        ]
        queued = [
            m.content
            for name in (self.settings.queue_name, self.settings.poison_queue_name)
            for m in storage.queue(name).peek_messages(max_messages=32)
        ]
        haystacks = {
            "answers": self.answers,
            "sent queue messages": self.sent,
            "log messages": [r.getMessage() for r in records],
            "json log lines": [formatter.format(r) for r in records],
            "log exceptions": [plain.formatException(r.exc_info) for r in records if r.exc_info],
            "app log records, unredacted": self.app_log_lines,
            "table entities": entities,
            "queued messages": queued,
            "run records": [json.dumps(dataclasses.asdict(r)) for r in runs],
        }
        assert records and self.sent and queued and entities and self.app_log_lines
        return haystacks

    def assert_nowhere(self, secrets: dict[str, str], runs: list[RunRecord], also: dict | None = None) -> None:
        """No secret (named for the message) in any place, nor in the texts of `also` (place -> texts)."""
        for where, texts in {**self.haystacks(runs), **(also or {})}.items():
            for text in texts:
                for what, secret in secrets.items():
                    assert secret not in text, f"{what} found in {where}: {text[:300]}"

    def fail_unexpectedly(self, monkeypatch, text: str) -> None:
        """An unexpected failure whose text carries secrets: a 500, and the log line that says so."""
        with monkeypatch.context() as patched:
            patched.setattr(self.ctx.integrations, "list", lambda account: (_ for _ in ()).throw(RuntimeError(text)))
            self.api("integrations_list", None, 500, account="acme")
        assert any("unexpected failure" in r.getMessage() for r in self.caplog.records), "the 500 was logged"


@pytest.fixture
def witness(ctx, settings, caplog, app_log_lines, monkeypatch) -> Witness:
    """Logs at DEBUG from the app and every SDK, redacted as in the Functions host, and queue sends recorded.

    Request it after the fixtures that set up the customers' servers: what they log is the test's, not the app's."""
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "urllib3", "exporter", "botocore", "boto3", "s3transfer", "google"):
        caplog.set_level(logging.DEBUG, logger=name)
    # As in the Functions host: the app's redacting filter on the handlers (here caplog's). Third-party
    # records (urllib3 logs each request URL, SAS signature included, at DEBUG) are checked as the
    # handlers see them; the app's own records are also checked raw, before redaction (app_log_lines).
    logs.install_redaction()
    return Witness(ctx, settings, caplog, app_log_lines, monkeypatch)


def test_no_secret_anywhere_through_a_full_scenario(
    ctx, clock, settings, customer_container, azurite_connection, monkeypatch, witness
):
    api = witness.api
    name = customer_container.container_name
    wrong_conn = azurite_connection.replace(DEV_KEY, WRONG_KEY)
    url, sas = _sas_url(azurite_connection, name)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    sig_in_url = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    expired_url = url.replace("se=2100", "se=2000")

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
    assert RunStatus.POISONED in {r.status for r in poisoned_runs}
    poisoned_queue = [m.content for m in ctx.storage.queue(settings.poison_queue_name).peek_messages(max_messages=32)]
    assert len(poisoned_queue) == 2

    # The customer's key stops working while exporting: the worker stops the integration.
    swap_secret(ctx, key_id, wrong_conn)
    clock.set(T0 + timedelta(hours=4, minutes=2))
    tick(ctx)

    # An unexpected failure whose text carries secrets: the 500 answer and its log line must not.
    witness.fail_unexpectedly(monkeypatch, f"boom {azurite_connection} {url} {wrong_conn}")

    for iid in (key_id, sas_id):
        api("integrations_show", None, 200, account="acme", id=iid)
        api("integrations_runs", None, 200, account="acme", id=iid)
    api("integrations_list", None, 200, account="acme")
    api("ucd_catalog", None, 200, account="acme")

    # The scenario did what it claims.
    key_state = ctx.repo.get("acme", key_id)
    assert key_state.status == Status.CREDENTIAL_ERROR and "refused the credentials" in key_state.last_error
    runs = ctx.runs.list("acme", key_id) + ctx.runs.list("acme", sas_id)
    assert {r.status for r in runs} >= {RunStatus.EXPORTED, RunStatus.FAILED}
    assert any(b.name.startswith("sas/") for b in customer_container.list_blobs())

    assert any("integration stopped" in line for line in witness.app_log_lines), (
        "the worker's credential stop was logged"
    )
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
    witness.assert_nowhere(secrets, runs + poisoned_runs, {"poisoned messages": poisoned_queue})

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


def test_no_s3_or_gcs_secret_anywhere_through_a_full_scenario(ctx, clock, settings, s3, gcs, monkeypatch, witness):
    """The S3 secret access key and the GCS private key (and the access tokens it earns, and the raw key
    id) appear in no answer, log, table, queue message or run record: verify, create, refusals, exports,
    a poisoned job, a credential stop mid-export and an unexpected failure whose text holds them."""
    # s3 and gcs are made before the witness listens: the test's own IAM calls are not the app's.
    api = witness.api
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
    poisoned = [r for iid in ids.values() for r in ctx.runs.list("acme", iid) if r.status == RunStatus.POISONED]
    assert len(poisoned) == 2

    # The credentials stop working while exporting: the worker stops both integrations.
    for kit in (s3, gcs):
        swap_secret(ctx, ids[kit.kind], parse_destination(kit.refused_body(), partial=False).complete().secret)
    clock.set(T0 + timedelta(hours=4, minutes=2))
    tick(ctx)

    witness.fail_unexpectedly(monkeypatch, f"boom {json.dumps(s3.body())} {gcs.body()!r}")
    for iid in ids.values():
        api("integrations_show", None, 200, account="acme", id=iid)
        api("integrations_runs", None, 200, account="acme", id=iid)
    api("integrations_list", None, 200, account="acme")

    runs = [r for iid in ids.values() for r in ctx.runs.list("acme", iid)] + poisoned
    for iid in ids.values():
        assert ctx.repo.get("acme", iid).status == Status.CREDENTIAL_ERROR
    assert {r.status for r in runs} >= {RunStatus.EXPORTED, RunStatus.FAILED, RunStatus.POISONED}
    assert s3.names() and gcs.names()

    assert any("botocore" in r.name for r in witness.caplog.records) and any(
        r.name.startswith("google") or "urllib3" in r.name for r in witness.caplog.records
    )

    secrets = {**s3.secrets(), **gcs.secrets(), "access key id": s3.key["access_key_id"]}
    secrets.update({f"access token {i}": token for i, token in enumerate(gcs.tokens.granted)})
    assert gcs.tokens.granted, "the GCS exports ran the OAuth flow"
    witness.assert_nowhere(secrets, runs)
    for entity in [e for e in ctx.storage.table("integrations").list_entities() if e.get("kind") == "integration"]:
        opened = ctx.integrations.secrets.open(entity["secret"])
        assert "secret_access_key" in opened or "private_key" in opened, "sealed, and opens to the credentials"
