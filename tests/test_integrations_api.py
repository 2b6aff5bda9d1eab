"""The integrations API (docs/architecture.md, docs/invariants.md): validation, the 5-integration limit,
updates and their races, pause/resume, credential-error recovery, delete, and activation time. Against Azurite."""

import base64
import csv
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from exporter.clock import iso
from exporter.destinations.azure_blob import parse_connection_string
from exporter.integrations.bodies import DestinationParams, DestinationRequest, parse_destination
from exporter.integrations.model import DestinationConfig, Status
from exporter.local.devstorage import DEV_ACCOUNT, DEV_KEY
from exporter.local.host import tick
from tests.helpers import T0, call, integration_body

WRONG_KEY = base64.b64encode(b"a-wrong-key-that-is-valid-base64!" * 2).decode()


def create(ctx, conn, container, account="acme", **overrides) -> dict:
    answer = call(ctx, "integrations_create", integration_body(conn, container, **overrides), account=account)
    assert answer.status == 201, answer.body
    return answer.body


def show(ctx, iid, account="acme") -> dict:
    answer = call(ctx, "integrations_show", account=account, id=iid)
    assert answer.status == 200, answer.body
    return answer.body


def update(ctx, iid, body, account="acme", **headers):
    from exporter import api

    return api.handle(
        ctx,
        "integrations_update",
        api.ApiRequest(
            params={"account": account, "id": iid},
            body=json.dumps(body).encode(),
            headers=headers,
        ),
    )


def listed(ctx, account="acme") -> list[dict]:
    return call(ctx, "integrations_list", account=account).body["integrations"]


def blob_names(container) -> list[str]:
    return sorted(b.name for b in container.list_blobs())


# ------------------------------------------------------------------ validation (docs/invariants.md: bad input)

INVALID = [
    ("frequency 3", {"frequency_hours": 3}, "frequency_hours", "must be one of 1, 2, 4, 6, 12, 24"),
    ("frequency as a string", {"frequency_hours": "1"}, "frequency_hours", "must be one of"),
    ("frequency as a bool", {"frequency_hours": True}, "frequency_hours", "must be one of"),
    ("no events", {"events": []}, "events", "at least one event"),
    ("event without name", {"events": [{"params": ["price"]}]}, "events[0].name", "non-empty string"),
    ("duplicate event", {"events": [{"name": "purchase"}, {"name": "purchase"}]}, "events[1].name", "selected twice"),
    (
        "param listed twice",
        {"events": [{"name": "purchase", "params": ["price", "price"]}]},
        "events[0].params[1]",
        "listed twice",
    ),
    ("attribute twice", {"attributes": ["email", "email"]}, "attributes[1]", "selected twice"),
    ("unknown top-level field", {"colour": "blue"}, "colour", "not a known field"),
    (
        "param named like a fixed column",
        {"events": [{"name": "purchase", "params": ["event_id"]}]},
        "events[0].params[0]",
        "collide",
    ),
    (
        "param attr_email and attribute email",
        {"events": [{"name": "purchase", "params": ["attr_email"]}], "attributes": ["email"]},
        "attributes[0]",
        "collide",
    ),
    ("status credential_error", {"status": "credential_error"}, "status", "'active' or 'paused'"),
    ("no name", {"name": ""}, "name", "non-empty"),
    ("name with a control character", {"name": "feed\x00"}, "name", "control characters"),
    ("name with a newline", {"name": "feed\nsecond line"}, "name", "control characters"),
    ("name with an unpaired surrogate", {"name": "feed \ud800"}, "name", "Unicode"),
]


@pytest.mark.parametrize("case, overrides, field, reason", INVALID, ids=[c[0] for c in INVALID])
def test_create_refuses_invalid_bodies_naming_the_field_and_stores_nothing(
    ctx, customer_container, azurite_connection, case, overrides, field, reason
):
    body = integration_body(azurite_connection, customer_container.container_name, **overrides)
    answer = call(ctx, "integrations_create", body, account="acme")
    assert answer.status == 400, answer.body
    assert answer.body["error"]["code"] == "invalid_input"
    assert answer.body["error"]["field"] == field
    assert reason in answer.body["error"]["message"] and answer.body["error"]["message"].startswith(field)
    assert listed(ctx) == []
    assert blob_names(customer_container) == [], "a malformed body is refused before any verification write"


@pytest.mark.parametrize(
    "destination_change, field",
    [
        ({"region": "westeurope"}, "destination.region"),
        ({"container": "Bad_Name"}, "destination.container"),
        ({"container": "ab"}, "destination.container"),
        ({"type": "ftp"}, "destination.type"),
        ({"prefix": "a\\b"}, "destination.prefix"),
        (
            {"container": "exports\n"},
            "destination.container",
        ),  # `$` matched before the newline: 422 from storage before
        (
            {"connection_string": "AccountName=a;AccountKey=a2V5;x=\ud800"},
            "destination.connection_string",
        ),  # a 500 before
    ],
)
def test_create_refuses_invalid_destinations_naming_the_field(
    ctx, customer_container, azurite_connection, destination_change, field
):
    body = integration_body(azurite_connection, customer_container.container_name)
    body["destination"].update(destination_change)
    answer = call(ctx, "integrations_create", body, account="acme")
    assert (answer.status, answer.body["error"]["field"]) == (400, field), answer.body
    assert listed(ctx) == []


def test_update_refuses_invalid_bodies_and_changes_nothing(ctx, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    before = ctx.repo.get("acme", iid)
    for body, field in [
        ({"status": "credential_error"}, "status"),
        ({"frequency_hours": 5}, "frequency_hours"),
        ({"colour": "blue"}, "colour"),
        ({}, "body"),
        (
            {"events": [{"name": "purchase", "params": ["attr_email"]}]},
            "attributes[0]",
        ),  # collides with the stored attribute
        ({"destination": {"container": "NO"}}, "destination.container"),
    ]:
        answer = update(ctx, iid, body)
        assert (answer.status, answer.body["error"]["field"]) == (400, field), (body, answer.body)
    after = ctx.repo.get("acme", iid)
    assert after.etag == before.etag and after == before


# ------------------------------------------------------------------ selections the catalog has not seen


def test_a_selection_the_catalog_has_not_seen_warns_in_whole_sentences_naming_each_field(
    ctx, customer_container, azurite_connection
):
    stored = call(
        ctx,
        "ucd_upsert",
        {
            "users": [
                {
                    "user_id": "u1",
                    "attributes": {"email": "a@example.com"},
                    "events": [
                        {
                            "event_name": "purchase",
                            "timestamp": "2026-11-28T09:00:00Z",
                            "event_params": {"currency": "EUR"},
                        }
                    ],
                }
            ]
        },
        account="acme",
    )
    assert stored.status == 200, stored.body
    created = create(
        ctx,
        azurite_connection,
        customer_container.container_name,
        events=[{"name": "purchase", "params": ["currency", "price"]}, {"name": "refund", "params": ["amount"]}],
        attributes=["email", "plan"],
    )
    expected = [
        "events[0].params[1]: parameter 'price' has not been seen on event 'purchase' in this account yet; its column stays empty until it is.",
        "events[1].name: event 'refund' has not been seen in this account yet; the files hold no rows of it until it is.",
        "events[1].params[0]: parameter 'amount' has not been seen on event 'refund' in this account yet; its column stays empty until it is.",
        "attributes[1]: attribute 'plan' has not been seen on a user of this account yet; its column stays empty until it is.",
    ]
    assert created["warnings"] == expected
    assert show(ctx, created["id"])["warnings"] == expected
    call(
        ctx,
        "ucd_upsert",
        {
            "users": [
                {
                    "user_id": "u2",
                    "attributes": {"plan": "pro"},
                    "events": [
                        {"event_name": "purchase", "timestamp": "2026-11-28T09:00:00Z", "event_params": {"price": 1}},
                        {"event_name": "refund", "timestamp": "2026-11-28T09:00:00Z", "event_params": {"amount": 1}},
                    ],
                }
            ]
        },
        account="acme",
    )
    assert "warnings" not in show(ctx, created["id"]), "once seen, no warning"


# ------------------------------------------------------------------ the limit of 5


def test_five_integrations_then_the_sixth_is_refused_and_a_delete_frees_a_slot(
    ctx, customer_body, customer_container, azurite_connection
):
    ids = [create(ctx, azurite_connection, customer_container.container_name, name=f"feed {i}")["id"] for i in range(5)]
    sixth = call(ctx, "integrations_create", customer_body, account="acme")
    assert sixth.status == 409
    assert sixth.body["error"]["code"] == "limit_reached"
    message = sixth.body["error"]["message"]
    assert "5" in message and "delete one" in message and "S3" in message
    assert len(listed(ctx)) == 5

    assert call(ctx, "integrations_delete", account="acme", id=ids[2]).status == 200
    again = call(ctx, "integrations_create", customer_body, account="acme")
    assert again.status == 201, again.body
    assert len(listed(ctx)) == 5
    assert call(ctx, "integrations_create", customer_body, account="acme").status == 409


def test_the_limit_is_per_account(ctx, customer_container, azurite_connection):
    for _i in range(5):
        create(ctx, azurite_connection, customer_container.container_name, account="acme")
    create(ctx, azurite_connection, customer_container.container_name, account="globex")
    assert len(listed(ctx, "globex")) == 1


def test_concurrent_creates_on_a_fresh_account_exactly_five_succeed(ctx, customer_container, azurite_connection):
    start = threading.Barrier(10)
    body = integration_body(azurite_connection, customer_container.container_name)

    def attempt(_):
        start.wait()
        return call(ctx, "integrations_create", body, account="rush")

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(attempt, range(10)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] * 5 + [409] * 5, [a.body for a in answers]
    assert {a.body["error"]["code"] for a in answers if a.status == 409} == {"limit_reached"}
    stored = ctx.repo.list("rush")
    assert len(stored) == 5
    assert sorted(i.slot for i in stored) == [0, 1, 2, 3, 4]
    assert {i.id for i in stored} == {a.body["id"] for a in answers if a.status == 201}


# ------------------------------------------------------------------ no secret in answers (docs/invariants.md: secrets)


def test_show_list_create_and_update_never_contain_the_connection_string(ctx, customer_container, azurite_connection):
    name = customer_container.container_name
    created = create(ctx, azurite_connection, name)
    sas = generate_container_sas(
        DEV_ACCOUNT,
        name,
        account_key=DEV_KEY,
        permission=ContainerSasPermissions(write=True, create=True),
        expiry=T0 + timedelta(days=36500),
    )
    url = f"{parse_connection_string(azurite_connection).blob_endpoint}/{name}?{sas}"
    body = integration_body(url, name)
    sas_created = call(ctx, "integrations_create", body, account="acme").body
    updated = update(ctx, created["id"], {"destination": {"connection_string": azurite_connection}}).body
    answers = [
        created,
        sas_created,
        updated,
        show(ctx, created["id"]),
        show(ctx, sas_created["id"]),
        call(ctx, "integrations_list", account="acme").body,
    ]
    signature = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    for answer in answers:
        text = json.dumps(answer)
        assert DEV_KEY not in text and azurite_connection not in text and signature not in text and sas not in text
    assert show(ctx, created["id"])["destination"]["connection_string"] == (
        f"BlobEndpoint={parse_connection_string(azurite_connection).blob_endpoint};AccountName={DEV_ACCOUNT};AccountKey=***"
    )
    assert show(ctx, sas_created["id"])["destination"]["connection_string"].endswith(";SharedAccessSignature=***")
    assert {i["destination"]["connection_string"] for i in listed(ctx)} == {
        show(ctx, created["id"])["destination"]["connection_string"],
        show(ctx, sas_created["id"])["destination"]["connection_string"],
    }


# ------------------------------------------------------------------ updates


def test_frequency_change(ctx, clock, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    clock.advance(minutes=5)
    answer = update(ctx, iid, {"frequency_hours": 2})
    assert answer.status == 200, answer.body
    assert "verification" not in answer.body, "no destination change, no verification"
    stored = show(ctx, iid)
    assert stored["frequency_hours"] == 2
    assert stored["updated_at"] == iso(T0 + timedelta(minutes=5))
    assert stored["activated_at"] == iso(T0)


def test_prefix_change_is_verified(ctx, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    answer = update(ctx, iid, {"destination": {"prefix": "elsewhere/deep/"}})
    assert answer.status == 200, answer.body
    assert answer.body["verification"]["test_file"]["name"].startswith("elsewhere/deep/")
    assert answer.body["destination"]["prefix"] == "elsewhere/deep/"
    assert blob_names(customer_container) == []

    customer_container.delete_container()  # verification must notice it now
    refused = update(ctx, iid, {"destination": {"prefix": "third/"}})
    assert (refused.status, refused.body["error"]["code"]) == (422, "destination_error"), refused.body
    assert show(ctx, iid)["destination"]["prefix"] == "elsewhere/deep/"


def test_a_destination_update_keeps_what_it_does_not_give():
    stored = DestinationConfig(
        type="azure_blob", container="exports", prefix="old/", sealed_secret="sealed", masked="***"
    )
    opened = []

    def open_secret(sealed):
        opened.append(sealed)
        return "the stored secret"

    given = parse_destination({"prefix": "new/"}, partial=True)
    assert given == DestinationRequest(type=None, parameters={}, prefix="new/")
    assert given.filled_from(stored, open_secret) == DestinationParams(
        "azure_blob", "the stored secret", "exports", "new/"
    )
    assert opened == ["sealed"]
    rooted = parse_destination({"prefix": None, "connection_string": "new secret"}, partial=True).filled_from(
        stored, open_secret
    )
    assert (rooted.prefix, rooted.secret, opened) == ("", "new secret", ["sealed"]), (
        "null is the root; a given secret is not opened"
    )
    created = parse_destination({"type": "azure_blob", "connection_string": "s"}, partial=False)
    assert created == DestinationRequest("azure_blob", {"connection_string": "s"}, ""), (
        "on create the prefix defaults to the root"
    )
    assert created.complete() == DestinationParams("azure_blob", "s", None, "")


def test_destination_update_with_a_wrong_key_is_refused_and_changes_nothing(
    ctx, customer_container, azurite_connection
):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    before = ctx.repo.get("acme", iid)
    wrong = azurite_connection.replace(DEV_KEY, WRONG_KEY)
    answer = update(ctx, iid, {"name": "renamed", "destination": {"connection_string": wrong}})
    assert (answer.status, answer.body["error"]["code"]) == (422, "credential_error"), answer.body
    after = ctx.repo.get("acme", iid)
    assert after == before and after.etag == before.etag
    assert ctx.integrations.secrets.open(after.destination.sealed_secret) == azurite_connection


def test_if_match_with_the_current_etag_succeeds_and_a_stale_one_is_412(ctx, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    etag = show(ctx, iid)["etag"]
    assert etag
    first = update(ctx, iid, {"name": "first"}, **{"If-Match": etag})
    assert first.status == 200, first.body
    assert first.body["etag"] != etag
    second = update(ctx, iid, {"name": "second"}, **{"If-Match": etag})
    assert (second.status, second.body["error"]["code"]) == (412, "precondition_failed")
    assert show(ctx, iid)["name"] == "first"


def test_list_items_carry_the_etag_that_show_gives_and_an_update_accepts(ctx, customer_container, azurite_connection):
    """The README says list and show return an `etag`; list items had none."""
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    [item] = listed(ctx)
    assert item["etag"] and item["etag"] == show(ctx, iid)["etag"]
    assert update(ctx, iid, {"name": "renamed"}, **{"If-Match": item["etag"]}).status == 200


def test_if_match_star_matches_any_current_version_but_not_a_missing_one(ctx, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    update(ctx, iid, {"name": "changed first"})
    answer = update(ctx, iid, {"name": "any version"}, **{"If-Match": "*"})
    assert answer.status == 200 and answer.body["name"] == "any version", answer.body
    assert call(ctx, "integrations_delete", account="acme", id=iid).status == 200
    gone = update(ctx, iid, {"name": "x"}, **{"If-Match": "*"})
    assert (gone.status, gone.body["error"]["code"]) == (404, "not_found"), gone.body


def test_an_edit_that_read_before_another_edit_is_refused(ctx, customer_container, azurite_connection, monkeypatch):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    stale = ctx.repo.get("acme", iid)
    assert update(ctx, iid, {"name": "edit B"}).status == 200  # lands between A's read and A's write

    real_get, reads = ctx.repo.get, []

    def first_read_is_stale(account, integration_id):
        reads.append(integration_id)
        return stale if len(reads) == 1 else real_get(account, integration_id)

    monkeypatch.setattr(ctx.repo, "get", first_read_is_stale)
    losing = update(ctx, iid, {"name": "edit A"})
    monkeypatch.undo()
    assert (losing.status, losing.body["error"]["code"]) == (409, "conflict"), losing.body
    assert show(ctx, iid)["name"] == "edit B"


def test_two_concurrent_edits_of_the_same_field_exactly_one_wins(
    ctx, customer_container, azurite_connection, monkeypatch
):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    real_get = ctx.repo.get
    both_have_read = threading.Barrier(2)
    local = threading.local()

    def get_then_wait(account, integration_id):
        found = real_get(account, integration_id)
        if not getattr(local, "waited", False):
            local.waited = True
            both_have_read.wait(timeout=30)  # both edits hold the same version before either writes
        return found

    monkeypatch.setattr(ctx.repo, "get", get_then_wait)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda n: (n, update(ctx, iid, {"frequency_hours": n})), [2, 4]))
    monkeypatch.undo()
    statuses = sorted(a.status for _, a in answers)
    assert statuses == [200, 409], [a.body for _, a in answers]
    winner = next(n for n, a in answers if a.status == 200)
    assert show(ctx, iid)["frequency_hours"] == winner


def test_a_worker_state_change_racing_an_edit_does_not_fail_the_edit(
    ctx, customer_container, azurite_connection, monkeypatch
):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    stale = ctx.repo.get("acme", iid)
    delivered = T0 + timedelta(hours=1)
    ctx.repo.replace(stale.with_changes(last_success_end=delivered))  # the worker, between the edit's read and write

    real_get, reads = ctx.repo.get, []

    def first_read_is_stale(account, integration_id):
        reads.append(integration_id)
        return stale if len(reads) == 1 else real_get(account, integration_id)

    monkeypatch.setattr(ctx.repo, "get", first_read_is_stale)
    answer = update(ctx, iid, {"frequency_hours": 6})
    monkeypatch.undo()
    assert answer.status == 200, answer.body
    assert len(reads) >= 2, "the edit was retried on the fresh record"
    stored = show(ctx, iid)
    assert stored["frequency_hours"] == 6
    assert stored["last_success_end"] == iso(delivered), "the edit must not undo the worker's progress"


# ------------------------------------------------------------------ pause / resume


def test_pause_and_resume_keep_activation_and_progress(ctx, clock, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    clock.set(T0 + timedelta(hours=1, minutes=2))
    assert tick(ctx)["worker"]["windows_exported"] == 1
    assert show(ctx, iid)["last_success_end"] == iso(T0 + timedelta(hours=1))

    paused = call(ctx, "integrations_pause", account="acme", id=iid)
    assert (paused.status, paused.body["status"]) == (200, "paused")
    clock.set(T0 + timedelta(hours=5, minutes=2))
    assert tick(ctx)["worker"]["windows_exported"] == 0, "a paused integration is skipped"
    assert show(ctx, iid)["last_success_end"] == iso(T0 + timedelta(hours=1))

    resumed = call(ctx, "integrations_resume", account="acme", id=iid)
    assert resumed.status == 200, resumed.body
    assert resumed.body["status"] == "active"
    assert resumed.body["activated_at"] == iso(T0)
    assert resumed.body["last_success_end"] == iso(T0 + timedelta(hours=1))
    assert tick(ctx)["worker"]["windows_exported"] == 4, "resuming catches up on the paused windows"


def test_pause_and_resume_are_idempotent_and_patch_status_works_too(ctx, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    assert call(ctx, "integrations_resume", account="acme", id=iid).body["status"] == "active"
    assert update(ctx, iid, {"status": "paused"}).body["status"] == "paused"
    assert call(ctx, "integrations_pause", account="acme", id=iid).body["status"] == "paused"
    assert update(ctx, iid, {"status": "active"}).body["status"] == "active"


def test_credential_error_recovery_needs_verified_credentials(ctx, clock, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    current = ctx.repo.get("acme", iid)
    reason = "the storage account refused the credentials: wrong account key, or an expired or invalid SAS (AuthorizationFailure)"
    ctx.repo.replace(current.with_changes(status=Status.CREDENTIAL_ERROR, last_error=reason))  # what the worker does
    assert show(ctx, iid)["last_error"] == reason

    for op in ("integrations_resume", "integrations_pause"):
        refused = call(ctx, op, account="acme", id=iid)
        assert (refused.status, refused.body["error"]["code"]) == (409, "conflict"), refused.body
        assert "credentials" in refused.body["error"]["message"]
    assert update(ctx, iid, {"status": "active"}).status == 409
    refused = update(ctx, iid, {"status": "active"}, **{"If-Match": show(ctx, iid)["etag"]})
    assert (refused.status, refused.body["error"]["code"]) == (409, "conflict"), "a refused change is not a stale ETag"
    still_wrong = update(
        ctx, iid, {"destination": {"connection_string": azurite_connection.replace(DEV_KEY, WRONG_KEY)}}
    )
    assert still_wrong.status == 422
    assert show(ctx, iid)["status"] == "credential_error"

    clock.advance(hours=3)
    fixed = update(ctx, iid, {"destination": {"connection_string": azurite_connection}})
    assert fixed.status == 200, fixed.body
    assert fixed.body["verification"]["ok"] is True
    stored = show(ctx, iid)
    assert stored["status"] == "active" and stored["last_error"] is None
    assert stored["activated_at"] == iso(T0), "recovery keeps the activation; catch-up resumes from last_success_end"


# ------------------------------------------------------------------ delete

# Every operation on one integration, with a body it accepts.
ID_OPERATIONS = [
    ("integrations_show", None),
    ("integrations_runs", None),
    ("integrations_delete", None),
    ("integrations_pause", None),
    ("integrations_resume", None),
    ("integrations_update", {"name": "x"}),
    ("integrations_replay", {"start": 1795860000}),
]


def test_delete_then_everything_is_404(ctx, customer_container, azurite_connection):
    iid = create(ctx, azurite_connection, customer_container.container_name)["id"]
    deleted = call(ctx, "integrations_delete", account="acme", id=iid)
    assert (deleted.status, deleted.body) == (200, {"id": iid, "deleted": True})
    for op, body in ID_OPERATIONS:
        answer = call(ctx, op, body, account="acme", id=iid)
        assert (answer.status, answer.body["error"]["code"]) == (404, "not_found"), (op, answer.body)
    assert listed(ctx) == []
    slots = list(ctx.storage.table("integrations").query_entities("PartitionKey eq 'acme'"))
    assert slots == [], "the slot is freed with the integration"


def test_unknown_integration_is_404(ctx):
    assert call(ctx, "integrations_show", account="acme", id="nope").status == 404
    assert call(ctx, "integrations_runs", account="acme", id="nope").status == 404


@pytest.mark.parametrize(
    "iid", ["3f9c0a1b/2c3d", "a/b", "..", "3f9c0a1b2c3d#", "3F9C0A1B2C3D", "3f9c0a1b2c3d\n", "x" * 2000, "é"]
)
def test_an_id_that_no_integration_can_have_is_404_without_asking_storage(ctx, monkeypatch, iid):
    """Ids are 12 lowercase hex digits; '/' (an encoded %2F in the route) used to reach storage and answer 503."""

    def untouchable(*_args, **_kwargs):
        raise AssertionError("storage was asked about an id no integration can have")

    monkeypatch.setattr(ctx.repo.table, "get_entity", untouchable)
    for op, body in ID_OPERATIONS:
        answer = call(ctx, op, body, account="acme", id=iid)
        assert (answer.status, answer.body["error"]["code"], answer.body["error"]["field"]) == (
            404,
            "not_found",
            "id",
        ), (op, answer.body)
        assert answer.body["error"]["message"] == f"integration {iid!r} not found in account 'acme'", (
            "the answer to an unknown id"
        )


# ------------------------------------------------------------------ activated_at


def test_activated_at_is_the_clock_time_when_created_active(ctx, clock, customer_container, azurite_connection):
    clock.set(T0 + timedelta(minutes=17, seconds=3))
    created = create(ctx, azurite_connection, customer_container.container_name)
    assert created["activated_at"] == iso(T0 + timedelta(minutes=17, seconds=3)) == created["created_at"]


def test_activation_rounds_up_so_an_event_stored_before_it_is_not_exported(
    ctx, clock, customer_container, azurite_connection
):
    """I3, no historical export: rounded down, activation at 10:00:00.5 became 10:00:00 and took the event stored at 10:00:00.5."""
    clock.set(T0 + timedelta(milliseconds=500))
    created = create(ctx, azurite_connection, customer_container.container_name)
    assert created["activated_at"] == iso(T0 + timedelta(seconds=1))

    def store(user: str) -> None:
        answer = call(
            ctx,
            "ucd_upsert",
            {"users": [{"user_id": user, "events": [{"event_name": "purchase", "timestamp": "2026-11-28T09:00:00Z"}]}]},
            account="acme",
        )
        assert answer.body["stored_events"] == 1, answer.body

    store("before-activation")  # stored at activation - 0.5 s
    clock.set(T0 + timedelta(seconds=1))
    store("at-activation")
    clock.set(T0 + timedelta(hours=1, minutes=3))
    assert tick(ctx)["worker"]["windows_exported"] == 1
    [blob] = customer_container.list_blobs(name_starts_with="insider/acme_")
    assert blob.name.endswith(f"_{1795860001}_{1795860001 + 3600}.csv")
    rows = list(csv.DictReader(io.StringIO(customer_container.download_blob(blob.name).readall().decode())))
    assert [r["user_id"] for r in rows] == ["at-activation"]


def test_created_paused_has_no_activation_until_resumed(ctx, clock, customer_container, azurite_connection):
    created = create(ctx, azurite_connection, customer_container.container_name, status="paused")
    assert created["status"] == "paused" and created["activated_at"] is None
    clock.set(T0 + timedelta(hours=3))
    assert tick(ctx)["worker"]["windows_exported"] == 0
    clock.set(T0 + timedelta(hours=3, minutes=30))
    resumed = call(ctx, "integrations_resume", account="acme", id=created["id"]).body
    assert resumed["status"] == "active"
    assert resumed["activated_at"] == iso(T0 + timedelta(hours=3, minutes=30))
    clock.set(T0 + timedelta(hours=4, minutes=32))
    assert tick(ctx)["worker"]["windows_exported"] == 1, "the first window starts at resume time"
    assert show(ctx, created["id"])["last_success_end"] == iso(T0 + timedelta(hours=4, minutes=30))
