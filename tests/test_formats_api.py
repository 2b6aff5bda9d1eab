"""`format` and `manifest` in the integration bodies: defaults, shown in the integration's JSON, changed by
an update, refused with a 400 naming the field (nothing stored); records written before formats existed
read as CSV without a manifest. Against Azurite."""

from __future__ import annotations

import json

import pytest

from exporter import cli
from exporter.export.formats import FORMAT_NAMES
from exporter.export.plan import EventSelection, Selection
from exporter.integrations.model import Integration
from tests.helpers import SECRET_KEY, call, integration_body


def create(ctx, conn, container, **overrides):
    return call(ctx, "integrations_create", integration_body(conn, container, **overrides), account="acme")


def test_the_formats_are_the_four_of_the_issue_in_one_list():
    assert FORMAT_NAMES == ("csv", "csv.gz", "parquet", "jsonl.gz")


def test_csv_without_a_manifest_is_the_default_and_both_are_shown(ctx, azurite_connection, customer_container):
    created = create(ctx, azurite_connection, customer_container.container_name)
    assert created.status == 201, created.body
    assert (created.body["format"], created.body["manifest"]) == ("csv", False)
    listed = call(ctx, "integrations_list", account="acme").body["integrations"]
    assert [(i["format"], i["manifest"]) for i in listed] == [("csv", False)]


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_format_can_be_created_and_changed(ctx, azurite_connection, customer_container, name):
    created = create(ctx, azurite_connection, customer_container.container_name, format=name, manifest=True)
    assert created.status == 201, created.body
    iid = created.body["id"]
    shown = call(ctx, "integrations_show", account="acme", id=iid).body
    assert (shown["format"], shown["manifest"]) == (name, True)
    other = "parquet" if name != "parquet" else "csv.gz"
    changed = call(ctx, "integrations_update", {"format": other}, account="acme", id=iid)
    assert changed.status == 200, changed.body
    assert (changed.body["format"], changed.body["manifest"]) == (other, True), "what an update does not give stays"
    changed = call(ctx, "integrations_update", {"manifest": False}, account="acme", id=iid)
    assert (changed.body["format"], changed.body["manifest"]) == (other, False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format", "xml"),
        ("format", "CSV"),
        ("format", "gz"),
        ("format", ""),
        ("format", 5),
        ("format", None),
        ("format", ["csv"]),
        ("manifest", "yes"),
        ("manifest", 1),
        ("manifest", None),
    ],
)
def test_a_bad_format_or_manifest_is_a_400_naming_the_field_and_nothing_is_stored(
    ctx, azurite_connection, customer_container, field, value
):
    answer = create(ctx, azurite_connection, customer_container.container_name, **{field: value})
    assert answer.status == 400, answer.body
    assert answer.body["error"]["field"] == field
    if field == "format":
        assert all(repr(name) in answer.body["error"]["message"] for name in FORMAT_NAMES), "it lists the formats"
    assert call(ctx, "integrations_list", account="acme").body["integrations"] == []

    good = create(ctx, azurite_connection, customer_container.container_name)
    iid = good.body["id"]
    refused = call(ctx, "integrations_update", {field: value, "name": "renamed"}, account="acme", id=iid)
    assert (refused.status, refused.body["error"]["field"]) == (400, field)
    shown = call(ctx, "integrations_show", account="acme", id=iid).body
    assert (shown["name"], shown["format"], shown["manifest"]) == ("warehouse feed", "csv", False), "nothing changed"


def test_records_from_before_formats_read_as_csv_without_a_manifest(ctx, azurite_connection, customer_container):
    created = create(ctx, azurite_connection, customer_container.container_name, format="parquet", manifest=True)
    entity = dict(ctx.repo.table.get_entity("acme", created.body["id"]))
    for name in ("format", "manifest"):
        del entity[name]
    legacy = Integration.from_entity(entity)
    assert (legacy.format, legacy.manifest) == ("csv", False)
    stored = {"events": [{"name": "purchase", "params": ["price"]}], "attributes": ["email"]}
    selection = Selection.from_json(stored)
    assert selection == Selection((EventSelection("purchase", ("price",)),), ("email",), "csv", False, None)
    typed = Selection(selection.events, selection.attributes, "parquet", True, (("price", "number"),))
    assert Selection.from_json(json.loads(json.dumps(typed.to_json()))) == typed, "a run record keeps it whole"


def test_a_catalog_entry_from_before_kinds_types_its_keys_as_strings(ctx):
    """Its keys' past values are unknown, so they stay strings for good; a key added later gets its kind."""
    ctx.ucd.catalogs.table.create_entity(
        {"PartitionKey": "acme", "RowKey": "event~purchase", "name": "purchase", "keys": json.dumps(["price"])}
    )
    assert ctx.ucd.catalog("acme")["param_types"] == {"purchase": {"price": "string"}}
    event = {"event_name": "purchase", "timestamp": "2026-11-28T09:00:00Z", "event_params": {"price": 3, "qty": 2}}
    assert call(ctx, "ucd_upsert", {"users": [{"user_id": "u", "events": [event]}]}, account="acme").status == 200
    assert ctx.ucd.catalog("acme")["param_types"] == {"purchase": {"price": "string", "qty": "integer"}}


def test_the_cli_takes_and_shows_format_and_manifest(
    tmp_path, monkeypatch, capsys, azurite_connection, customer_container, tag
):
    for name, value in {
        "AzureWebJobsStorage": azurite_connection,
        "EXPORT_SECRET_KEY": SECRET_KEY,
        "EXPORT_TABLE_PREFIX": f"f{tag}",
        "UCD_CONTAINER": f"ucd-f{tag}",
        "EXPORT_QUEUE_NAME": f"f-{tag}",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.logs, "configure", lambda level: None)  # the test's own logging stays as it is

    def run(*args: str, body: dict | None = None) -> tuple[int, dict]:
        if body is not None:
            (tmp_path / "body.json").write_text(json.dumps(body))
            args += ("body.json",)
        code = cli.main(list(args))
        return code, json.loads(capsys.readouterr().out)

    body = integration_body(azurite_connection, customer_container.container_name, format="jsonl.gz", manifest=True)
    code, created = run("integrations", "create", "--account", "acme", body=body)
    assert (code, created["format"], created["manifest"]) == (0, "jsonl.gz", True), created
    code, refused = run("integrations", "update", "--account", "acme", created["id"], body={"format": "xml"})
    assert (code, refused["error"]["field"]) == (1, "format")
    code, shown = run("integrations", "show", "--account", "acme", created["id"])
    assert (code, shown["format"]) == (0, "jsonl.gz")
